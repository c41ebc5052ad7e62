//! JUnit XML for CodeBuild's `reports:` section: one test case per finding that counts, failing
//! ones first, within CodeBuild's limit of 500 test cases per report file.
//!
//! Written by hand (it is a few elements), with text escaped for XML 1.0: the five markup
//! characters become entities and characters XML 1.0 cannot carry at all (most control
//! characters, lone surrogates cannot occur in Rust strings) are dropped.

use std::fmt::Write as _;

use crate::policy::{Evaluation, Unit};
use crate::severity::Severity;

/// CodeBuild reads at most this many test cases from one report file.
pub const MAX_CASES: usize = 500;

/// Escapes text for an XML attribute or element body.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// One image's results: a `<testsuite>`.
#[derive(Debug)]
pub struct Suite<'a> {
    /// The suite's name: the image (`repository@digest`).
    pub name: String,
    /// The evaluation.
    pub evaluation: &'a Evaluation,
    /// Why each allowlist entry applies, by index (for skipped cases).
    pub reasons: Vec<String>,
    /// The least severity listed (failing units are always listed).
    pub show: Severity,
    /// A scan that gave no verdict: one failing case with this message instead of findings.
    pub error: Option<String>,
}

fn case(out: &mut String, suite: &str, unit: &Unit, reasons: &[String]) {
    let f = &unit.finding;
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\">",
        escape(&format!("{suite}.{}", f.severity)),
        escape(&f.label())
    );
    let mut details = format!("{} {}", f.severity, f.label());
    if let Some(fixed) = &f.fixed_in {
        let _ = write!(details, "; fixed in {fixed}");
    }
    if let Some(score) = f.score {
        let _ = write!(details, "; score {score}");
    }
    if let Some(title) = &f.title {
        let _ = write!(details, "; {title}");
    }
    if let Some(uri) = &f.uri {
        let _ = write!(details, "; {uri}");
    }
    if unit.failing {
        let _ = write!(
            out,
            "<failure type=\"{}\" message=\"{}\">{}</failure>",
            f.severity,
            escape(&details),
            escape(&details)
        );
    } else if let Some(entry) = unit.allowlisted_by {
        let reason = reasons.get(entry).map_or("", String::as_str);
        let _ = write!(
            out,
            "<skipped message=\"{}\"/>",
            escape(&format!("allowlisted: {reason}"))
        );
    }
    out.push_str("</testcase>\n");
}

/// Renders a report with one suite per image, within [`MAX_CASES`] cases in all: when findings
/// are left out, a last case says how many.
#[must_use]
pub fn render(suites: &[Suite<'_>]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"scan-gate\">\n",
    );
    // Reserve one case per suite for a "not listed" note, so the total stays within the limit.
    let mut budget = MAX_CASES.saturating_sub(suites.len());
    for suite in suites {
        let listed: Vec<&Unit> = match suite.error {
            Some(_) => Vec::new(),
            None => suite
                .evaluation
                .units
                .iter()
                .filter(|u| u.failing || u.finding.severity >= suite.show)
                .collect(),
        };
        let take = listed.len().min(budget);
        budget -= take;
        let left = listed.len() - take;
        let failing_left = listed[take..].iter().filter(|u| u.failing).count();
        let failures = listed[..take].iter().filter(|u| u.failing).count()
            + usize::from(failing_left > 0)
            + usize::from(suite.error.is_some());
        let skipped = listed[..take]
            .iter()
            .filter(|u| !u.failing && u.allowlisted_by.is_some())
            .count();
        let tests = take + usize::from(left > 0) + usize::from(suite.error.is_some());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            escape(&suite.name)
        );
        if let Some(error) = &suite.error {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{0}\" name=\"scan\"><failure type=\"scan\" message=\"{1}\">{1}</failure></testcase>",
                escape(&suite.name),
                escape(error)
            );
        }
        for unit in &listed[..take] {
            case(&mut out, &suite.name, unit, &suite.reasons);
        }
        if left > 0 {
            let text = format!(
                "{left} more findings not listed ({failing_left} of them failing): CodeBuild reads at most {MAX_CASES} test cases per report"
            );
            let body = if failing_left > 0 {
                format!(
                    "<failure type=\"truncated\" message=\"{0}\">{0}</failure>",
                    escape(&text)
                )
            } else {
                format!("<system-out>{}</system-out>", escape(&text))
            };
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"more findings\">{body}</testcase>",
                escape(&suite.name)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::{Allowlist, parse_date};
    use crate::finding::Finding;
    use crate::policy::{Policy, evaluate};

    #[test]
    fn escaping() {
        let table = [
            ("a<b>&\"c'", "a&lt;b&gt;&amp;&quot;c&apos;"),
            ("tab\there\nline", "tab\there\nline"),
            ("bell\u{7}nul\u{0}", "bellnul"),
            ("ünïcödé ✓", "ünïcödé ✓"),
            ("\u{FFFF}", ""),
        ];
        for (text, expected) in table {
            assert_eq!(escape(text), expected, "{text:?}");
        }
    }

    fn evaluation(n: usize, allowlist: &Allowlist) -> Evaluation {
        let mut findings: Vec<Finding> = (0..n)
            .map(|i| Finding::new(format!("CVE-{i}"), Severity::Medium))
            .collect();
        let mut bad = Finding::new("CVE-<x>&\"", Severity::Critical);
        bad.package = Some("pkg'1".into());
        bad.title = Some("ctrl\u{1b}[31m".into());
        findings.push(bad);
        findings.push(Finding::new("CVE-A", Severity::Critical));
        evaluate(
            &Policy::default(),
            &findings,
            allowlist,
            None,
            parse_date("2025-01-01").unwrap(),
        )
    }

    #[test]
    fn failures_first_allowlisted_skipped_escaped() {
        let list =
            Allowlist::parse(r#"[{"id": "CVE-A", "reason": "a & b", "expires": "2099-01-01"}]"#)
                .unwrap();
        let eval = evaluation(2, &list);
        let xml = render(&[Suite {
            name: "repo@sha256:1".into(),
            evaluation: &eval,
            reasons: vec!["a & b".into()],
            show: Severity::Low,
            error: None,
        }]);
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{xml}"
        );
        let first_case = xml.find("<testcase").unwrap();
        assert!(xml[first_case..].starts_with("<testcase classname=\"repo@sha256:1.CRITICAL\" name=\"CVE-&lt;x&gt;&amp;&quot; (pkg&apos;1)\"><failure"), "{xml}");
        assert!(xml.contains("<skipped message=\"allowlisted: a &amp; b\"/>"));
        assert!(!xml.contains('\u{1b}'));
        // --show high lists only failing and high-or-above units.
        let xml = render(&[Suite {
            name: "r".into(),
            evaluation: &eval,
            reasons: vec!["a & b".into()],
            show: Severity::High,
            error: None,
        }]);
        assert_eq!(xml.matches("<testcase").count(), 2, "{xml}");
    }

    #[test]
    fn stays_within_the_case_limit() {
        let eval = evaluation(1000, &Allowlist::default());
        let suites: Vec<Suite> = (0..2)
            .map(|i| Suite {
                name: format!("image{i}"),
                evaluation: &eval,
                reasons: Vec::new(),
                show: Severity::Low,
                error: None,
            })
            .collect();
        let xml = render(&suites);
        assert_eq!(
            xml.matches("<testcase").count(),
            MAX_CASES,
            "{}",
            &xml[..200]
        );
        assert!(xml.contains("more findings not listed"));
        // The failing cases of the first suite come before anything was cut.
        assert_eq!(xml.matches("<failure type=\"CRITICAL\"").count(), 2);
    }

    #[test]
    fn a_scan_error_is_one_failing_case() {
        let eval = evaluation(0, &Allowlist::default());
        let xml = render(&[Suite {
            name: "r".into(),
            evaluation: &eval,
            reasons: Vec::new(),
            show: Severity::Low,
            error: Some("scan FAILED: <bad>".into()),
        }]);
        assert!(xml.contains("tests=\"1\" failures=\"1\""), "{xml}");
        assert!(xml.contains("scan FAILED: &lt;bad&gt;"));
    }
}
