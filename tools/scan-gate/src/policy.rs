//! The gate's policy and its verdict: pure functions of the findings, the allowlist and the day.
//!
//! The steps, in order:
//! 1. Findings that never count are set aside: suppressed or closed ones always, and, when asked,
//!    those without a fix (`--ignore-unfixed`), with a known score below `--min-score`, or with
//!    no known exploit (`--exploitable-only`). Where the scanner does not say (a basic scan has
//!    no fix or exploit data), the finding counts: the gate fails closed.
//! 2. The allowlist marks findings it covers; expired entries do not apply.
//! 3. Findings are grouped into the units the policy counts (`--count`): each finding, each
//!    unique CVE, or each unique (CVE, package). A unit has the highest severity of its findings
//!    and is allowlisted only if all of them are.
//! 4. Each severity's count after the allowlist is held against its limit: its `--budget`, else
//!    zero when it is at or above `--fail-on`, else none.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use crate::allowlist::Allowlist;
use crate::finding::{Finding, Fix, State};
use crate::severity::{self, Severity};

/// What the policy counts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Counting {
    /// Every finding (one CVE in two packages is two).
    #[default]
    Findings,
    /// Unique vulnerability ids (one CVE in two packages is one).
    Cves,
    /// Unique (vulnerability id, package) pairs.
    Packages,
}

impl Counting {
    /// The name printed in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Counting::Findings => "findings",
            Counting::Cves => "unique CVEs",
            Counting::Packages => "unique (CVE, package) pairs",
        }
    }

    fn key(self, index: usize, finding: &Finding) -> String {
        match self {
            Counting::Findings => index.to_string(),
            Counting::Cves => finding.id.to_ascii_uppercase(),
            Counting::Packages => format!(
                "{}\u{0}{}",
                finding.id.to_ascii_uppercase(),
                finding.package.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// The gate's policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Fail on any finding of this severity or above (unless a budget says otherwise).
    pub fail_on: Option<Severity>,
    /// How many units of a severity are allowed.
    pub budgets: BTreeMap<Severity, u64>,
    /// The least severity listed in reports (failing findings are always listed).
    pub show: Severity,
    /// What is counted.
    pub counting: Counting,
    /// Findings with no fix do not count.
    pub ignore_unfixed: bool,
    /// Findings with a known score below this do not count.
    pub min_score: Option<f64>,
    /// Only findings with a known exploit (or where the scanner does not say) count.
    pub exploitable_only: bool,
    /// Allowlist entries that match nothing fail the gate.
    pub strict_allowlist: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fail_on: Some(Severity::Critical),
            budgets: BTreeMap::new(),
            show: Severity::Low,
            counting: Counting::Findings,
            ignore_unfixed: false,
            min_score: None,
            exploitable_only: false,
            strict_allowlist: false,
        }
    }
}

/// Parses `critical=0,high=5` (also repeated flags, each with one or more pairs).
pub fn parse_budgets(text: &str) -> Result<Vec<(Severity, u64)>, String> {
    let mut budgets = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, count) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not SEVERITY=COUNT (e.g. critical=0,high=5)"))?;
        let severity = Severity::parse(name)
            .ok_or_else(|| format!("'{name}' is not a severity ({})", severity::NAMES))?;
        let count = count
            .trim()
            .parse()
            .map_err(|_| format!("'{count}' is not a whole number of findings"))?;
        budgets.push((severity, count));
    }
    if budgets.is_empty() {
        return Err("no budget given (e.g. critical=0,high=5)".into());
    }
    Ok(budgets)
}

impl Policy {
    /// The most units of `severity` allowed, or `None` for no limit.
    #[must_use]
    pub fn limit(&self, severity: Severity) -> Option<u64> {
        self.budgets
            .get(&severity)
            .copied()
            .or_else(|| self.fail_on.filter(|f| severity >= *f).map(|_| 0))
    }

    /// The policy in the output document.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let limits: Map<String, Value> = Severity::ALL
            .iter()
            .filter_map(|s| Some((s.as_str().to_owned(), Value::from(self.limit(*s)?))))
            .collect();
        json!({
            "fail_on": self.fail_on.map(Severity::as_str),
            "limits": limits,
            "counting": match self.counting {
                Counting::Findings => "findings",
                Counting::Cves => "cves",
                Counting::Packages => "packages",
            },
            "ignore_unfixed": self.ignore_unfixed,
            "min_score": self.min_score,
            "exploitable_only": self.exploitable_only,
            "strict_allowlist": self.strict_allowlist,
        })
    }

    fn ignored_because(&self, finding: &Finding) -> Option<&'static str> {
        if finding.state == State::Suppressed {
            Some("suppressed")
        } else if finding.state == State::Closed {
            Some("closed")
        } else if self.ignore_unfixed && finding.fix == Fix::NotAvailable {
            Some("unfixed")
        } else if self
            .min_score
            .is_some_and(|min| finding.score.is_some_and(|s| s < min))
        {
            Some("below_min_score")
        } else if self.exploitable_only && finding.exploit == Some(false) {
            Some("no_known_exploit")
        } else {
            None
        }
    }
}

/// What the policy counts as one: a finding, or a group of findings with the same key.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The most severe finding of the group (the one reports show).
    pub finding: Finding,
    /// How many findings the unit stands for.
    pub findings: usize,
    /// The allowlist entry that covers every finding of the unit, if one does.
    pub allowlisted_by: Option<usize>,
    /// Whether the unit makes the gate fail.
    pub failing: bool,
}

/// A severity over its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breach {
    /// The severity.
    pub severity: Severity,
    /// Units counted after the allowlist.
    pub count: u64,
    /// The limit.
    pub limit: u64,
}

/// Counts per severity.
pub type Counts = BTreeMap<Severity, u64>;

/// The verdict and everything that led to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Every finding reported.
    pub total: usize,
    /// Findings set aside, by reason (`suppressed`, `unfixed`, ...).
    pub ignored: BTreeMap<&'static str, u64>,
    /// Units per severity before the allowlist.
    pub before: Counts,
    /// Units per severity after the allowlist.
    pub after: Counts,
    /// Every unit, failing ones first, then by severity.
    pub units: Vec<Unit>,
    /// Severities over their limits.
    pub breaches: Vec<Breach>,
    /// Per allowlist entry: findings it covers (unexpired entries only).
    pub matched: Vec<u64>,
    /// Per allowlist entry: whether it has expired, and findings it would have covered.
    pub expired: Vec<Option<u64>>,
    /// Whether the gate passes.
    pub passed: bool,
    /// Why it fails, one sentence each.
    pub reasons: Vec<String>,
}

impl Evaluation {
    /// Indexes of unexpired entries that matched nothing.
    #[must_use]
    pub fn unused(&self) -> Vec<usize> {
        (0..self.matched.len())
            .filter(|&i| self.expired[i].is_none() && self.matched[i] == 0)
            .collect()
    }

    /// The failing units.
    pub fn failing(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(|u| u.failing)
    }
}

/// Applies `policy` to `findings` for an image in `repository`, on `today`.
// The steps of the module doc, in one place, in order: splitting them would hide the order.
#[allow(clippy::too_many_lines)]
#[must_use]
pub fn evaluate(
    policy: &Policy,
    findings: &[Finding],
    allowlist: &Allowlist,
    repository: Option<&str>,
    today: NaiveDate,
) -> Evaluation {
    let entries = allowlist.entries.len();
    let mut matched = vec![0u64; entries];
    let mut expired: Vec<Option<u64>> = (0..entries)
        .map(|i| allowlist.expired(i, today).then_some(0))
        .collect();
    let mut ignored: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut units: Vec<Unit> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();

    for (index, finding) in findings.iter().enumerate() {
        if let Some(reason) = policy.ignored_because(finding) {
            *ignored.entry(reason).or_default() += 1;
            continue;
        }
        let mut allowlisted_by = None;
        for entry in allowlist.covering(finding, repository) {
            if let Some(hits) = &mut expired[entry] {
                *hits += 1;
            } else {
                matched[entry] += 1;
                allowlisted_by.get_or_insert(entry);
            }
        }
        let key = policy.counting.key(index, finding);
        if let Some(&at) = by_key.get(&key) {
            let unit = &mut units[at];
            unit.findings += 1;
            if allowlisted_by.is_none() {
                unit.allowlisted_by = None;
            }
            if finding.severity > unit.finding.severity {
                unit.finding = finding.clone();
            }
        } else {
            by_key.insert(key, units.len());
            units.push(Unit {
                finding: finding.clone(),
                findings: 1,
                allowlisted_by,
                failing: false,
            });
        }
    }

    let mut before = Counts::new();
    let mut after = Counts::new();
    for unit in &units {
        *before.entry(unit.finding.severity).or_default() += 1;
        if unit.allowlisted_by.is_none() {
            *after.entry(unit.finding.severity).or_default() += 1;
        }
    }
    let mut breaches = Vec::new();
    for severity in Severity::ALL {
        let count = after.get(&severity).copied().unwrap_or(0);
        if let Some(limit) = policy.limit(severity)
            && count > limit
        {
            breaches.push(Breach {
                severity,
                count,
                limit,
            });
        }
    }
    for unit in &mut units {
        unit.failing = unit.allowlisted_by.is_none()
            && breaches.iter().any(|b| b.severity == unit.finding.severity);
    }
    units.sort_by(|a, b| {
        b.failing
            .cmp(&a.failing)
            .then(b.finding.severity.cmp(&a.finding.severity))
            .then_with(|| a.finding.id.cmp(&b.finding.id))
    });

    let what = policy.counting.as_str();
    let mut reasons: Vec<String> = breaches
        .iter()
        .map(|b| format!("{} {} ({what}), {} allowed", b.count, b.severity, b.limit))
        .collect();
    let mut evaluation = Evaluation {
        total: findings.len(),
        ignored,
        before,
        after,
        units,
        breaches,
        matched,
        expired,
        passed: false,
        reasons: Vec::new(),
    };
    if policy.strict_allowlist {
        for index in evaluation.unused() {
            reasons.push(format!(
                "allowlist entry {} ({}) matched nothing (--strict-allowlist)",
                index + 1,
                allowlist.entries[index].id
            ));
        }
    }
    evaluation.passed = reasons.is_empty();
    evaluation.reasons = reasons;
    evaluation
}

/// Counts as a JSON object, every severity present (zeros included), most severe first.
#[must_use]
pub fn counts_json(counts: &Counts) -> Value {
    Value::Object(
        Severity::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    Value::from(counts.get(s).copied().unwrap_or(0)),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::parse_date;

    fn finding(id: &str, severity: Severity, package: &str) -> Finding {
        let mut f = Finding::new(id, severity);
        f.package = Some(package.into());
        f
    }

    fn today() -> NaiveDate {
        parse_date("2025-06-15").unwrap()
    }

    fn sample() -> Vec<Finding> {
        use Severity::*;
        vec![
            finding("CVE-1", Critical, "openssl"),
            finding("CVE-1", Critical, "libssl3"),
            finding("CVE-2", High, "zlib"),
            finding("CVE-2", High, "zlib"),
            finding("CVE-3", High, "curl"),
            finding("CVE-4", Medium, "bash"),
            finding("CVE-5", Low, "tar"),
            finding("CVE-6", Untriaged, "glibc"),
        ]
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(
            parse_budgets("critical=0, HIGH=5"),
            Ok(vec![(Severity::Critical, 0), (Severity::High, 5)])
        );
        for (bad, expected) in [
            ("critical", "not SEVERITY=COUNT"),
            ("severe=1", "not a severity"),
            ("high=-1", "whole number"),
            ("high=x", "whole number"),
            (",", "no budget"),
        ] {
            let err = parse_budgets(bad).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_combine_fail_on_and_budgets() {
        let policy = Policy {
            fail_on: Some(Severity::High),
            budgets: [(Severity::High, 5), (Severity::Low, 10)].into(),
            ..Policy::default()
        };
        let table = [
            (Severity::Critical, Some(0)),
            (Severity::High, Some(5)),
            (Severity::Medium, None),
            (Severity::Low, Some(10)),
            (Severity::Untriaged, None),
        ];
        for (severity, limit) in table {
            assert_eq!(policy.limit(severity), limit, "{severity}");
        }
    }

    #[test]
    fn counting_modes_and_budgets() {
        use Severity::*;
        // (counting, fail_on, budgets, expected after-counts C/H/M, passed)
        type Row = (
            Counting,
            Option<Severity>,
            Vec<(Severity, u64)>,
            [u64; 3],
            bool,
        );
        let table: Vec<Row> = vec![
            (Counting::Findings, Some(Critical), vec![], [2, 3, 1], false),
            (Counting::Cves, Some(Critical), vec![], [1, 2, 1], false),
            (Counting::Packages, Some(Critical), vec![], [2, 2, 1], false),
            (
                Counting::Findings,
                None,
                vec![(Critical, 2), (High, 3)],
                [2, 3, 1],
                true,
            ),
            (
                Counting::Findings,
                None,
                vec![(Critical, 2), (High, 2)],
                [2, 3, 1],
                false,
            ),
            (
                Counting::Cves,
                None,
                vec![(Critical, 1), (High, 2)],
                [1, 2, 1],
                true,
            ),
            (
                Counting::Packages,
                None,
                vec![(Critical, 1)],
                [2, 2, 1],
                false,
            ),
            (
                Counting::Cves,
                Some(Medium),
                vec![(Critical, 5), (High, 5), (Medium, 1)],
                [1, 2, 1],
                true,
            ),
            (
                Counting::Cves,
                Some(Untriaged),
                vec![(Critical, 5), (High, 5), (Medium, 1), (Low, 1)],
                [1, 2, 1],
                false,
            ),
            (Counting::Findings, None, vec![], [2, 3, 1], true),
        ];
        for (counting, fail_on, budgets, counts, passed) in table {
            let policy = Policy {
                fail_on,
                budgets: budgets.iter().copied().collect(),
                counting,
                ..Policy::default()
            };
            let eval = evaluate(&policy, &sample(), &Allowlist::default(), None, today());
            let got = [Critical, High, Medium].map(|s| eval.after.get(&s).copied().unwrap_or(0));
            assert_eq!(got, counts, "{counting:?} {fail_on:?} {budgets:?}");
            assert_eq!(
                eval.passed, passed,
                "{counting:?} {fail_on:?} {budgets:?}: {:?}",
                eval.reasons
            );
            assert_eq!(eval.before, eval.after, "no allowlist");
            assert_eq!(eval.passed, eval.breaches.is_empty());
            // Failing units come first, and only units of breached severities fail.
            let failing: Vec<bool> = eval.units.iter().map(|u| u.failing).collect();
            let mut sorted = failing.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            assert_eq!(failing, sorted);
        }
    }

    #[test]
    fn a_unique_cve_takes_its_highest_severity() {
        let findings = vec![
            finding("CVE-9", Severity::Low, "a"),
            finding("CVE-9", Severity::Critical, "b"),
        ];
        let policy = Policy {
            counting: Counting::Cves,
            ..Policy::default()
        };
        let eval = evaluate(&policy, &findings, &Allowlist::default(), None, today());
        assert_eq!(eval.after.get(&Severity::Critical), Some(&1));
        assert_eq!(eval.units.len(), 1);
        assert_eq!(eval.units[0].findings, 2);
        assert_eq!(eval.units[0].finding.package.as_deref(), Some("b"));
        assert!(!eval.passed);
        assert_eq!(eval.reasons, ["1 CRITICAL (unique CVEs), 0 allowed"]);
    }

    #[test]
    fn allowlist_expiry_and_strict_mode() {
        let list = Allowlist::parse(
            r#"[
              {"id": "CVE-1", "reason": "both packages", "expires": "2025-06-15"},
              {"id": "CVE-3", "reason": "expired", "expires": "2025-06-14"},
              {"id": "CVE-2", "reason": "wrong package", "expires": "2099-01-01", "package": "openssl"},
              {"id": "CVE-404", "reason": "gone", "expires": "2099-01-01"}
            ]"#,
        )
        .unwrap();
        for strict in [false, true] {
            let policy = Policy {
                fail_on: Some(Severity::High),
                budgets: [(Severity::High, 2)].into(),
                strict_allowlist: strict,
                ..Policy::default()
            };
            let eval = evaluate(&policy, &sample(), &list, None, today());
            assert_eq!(eval.before.get(&Severity::Critical), Some(&2));
            assert_eq!(
                eval.after.get(&Severity::Critical),
                None,
                "CVE-1 allowlisted"
            );
            assert_eq!(
                eval.after.get(&Severity::High),
                Some(&3),
                "CVE-3's entry expired"
            );
            assert_eq!(eval.matched, [2, 0, 0, 0]);
            assert_eq!(eval.expired, [None, Some(1), None, None]);
            assert_eq!(eval.unused(), [2, 3]);
            assert!(!eval.passed);
            let strict_reasons = eval.reasons.iter().filter(|r| r.contains("strict")).count();
            assert_eq!(strict_reasons, if strict { 2 } else { 0 });
        }
        // The day after, CVE-1's entry has expired too.
        let tomorrow = parse_date("2025-06-16").unwrap();
        let eval = evaluate(&Policy::default(), &sample(), &list, None, tomorrow);
        assert_eq!(eval.after.get(&Severity::Critical), Some(&2));
        assert_eq!(eval.expired[0], Some(2));
        // Strict mode alone fails a gate that would pass.
        let policy = Policy {
            fail_on: None,
            strict_allowlist: true,
            ..Policy::default()
        };
        let eval = evaluate(&policy, &sample(), &list, None, today());
        assert!(!eval.passed);
        assert!(eval.breaches.is_empty());
    }

    #[test]
    fn a_unit_is_allowlisted_only_when_all_its_findings_are() {
        let list = Allowlist::parse(
            r#"[{"id": "CVE-1", "reason": "r", "expires": "2099-01-01", "package": "openssl"}]"#,
        )
        .unwrap();
        let table = [
            (Counting::Findings, 1),
            (Counting::Cves, 1),
            (Counting::Packages, 1),
        ];
        for (counting, critical_after) in table {
            let policy = Policy {
                counting,
                ..Policy::default()
            };
            let eval = evaluate(&policy, &sample(), &list, None, today());
            assert_eq!(
                eval.after.get(&Severity::Critical).copied(),
                Some(critical_after),
                "{counting:?}"
            );
        }
    }

    #[test]
    fn enhanced_filters_and_closed_findings() {
        let mut suppressed = finding("CVE-S", Severity::Critical, "a");
        suppressed.state = State::Suppressed;
        let mut closed = finding("CVE-C", Severity::Critical, "a");
        closed.state = State::Closed;
        let mut unfixed = finding("CVE-U", Severity::Critical, "a");
        unfixed.fix = Fix::NotAvailable;
        let mut low_score = finding("CVE-L", Severity::Critical, "a");
        low_score.score = Some(4.0);
        let mut no_exploit = finding("CVE-E", Severity::Critical, "a");
        no_exploit.exploit = Some(false);
        let unknown = finding("CVE-K", Severity::Critical, "a"); // nothing known: counts
        let findings = vec![suppressed, closed, unfixed, low_score, no_exploit, unknown];
        // (ignore_unfixed, min_score, exploitable_only, critical counted)
        let table = [
            (false, None, false, 4),
            (true, None, false, 3),
            (false, Some(7.0), false, 3),
            (false, Some(4.0), false, 4),
            (false, None, true, 3),
            (true, Some(7.0), true, 1),
        ];
        for (ignore_unfixed, min_score, exploitable_only, counted) in table {
            let policy = Policy {
                ignore_unfixed,
                min_score,
                exploitable_only,
                ..Policy::default()
            };
            let eval = evaluate(&policy, &findings, &Allowlist::default(), None, today());
            assert_eq!(
                eval.after.get(&Severity::Critical).copied().unwrap_or(0),
                counted,
                "{ignore_unfixed} {min_score:?} {exploitable_only}"
            );
            assert_eq!(eval.ignored.get("suppressed"), Some(&1));
            assert_eq!(eval.ignored.get("closed"), Some(&1));
            assert_eq!(eval.total, 6);
        }
    }
}
