//! `scan-gate`: wait for an image's ECR scan correctly, then pass or fail the build on a clear
//! policy.
//!
//! Replaces `aws ecr wait image-scan-complete`, `aws ecr describe-image-scan-findings --query`
//! and the inline Python that counts CRITICAL findings. The policy engine is pure and lives in
//! [`policy`], [`allowlist`], [`readers`] and [`junit`]; [`ecr`] does the waiting. Findings can
//! also come from a file (saved ECR output, Trivy or Grype JSON), so the same gate runs offline.
//!
//! Writes the image document with a `scan` object: status, counts before and after the
//! allowlist, the verdict and the findings that decided it.

pub mod allowlist;
pub mod ecr;
pub mod finding;
pub mod junit;
pub mod policy;
pub mod readers;
pub mod severity;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use aws::{Aws, AwsArgs};
use chrono::NaiveDate;
use clap::Parser;
use serde_json::{Value, json};
use shared::cli::{Answer, Common};
use shared::exit::{self, Code};
use shared::files;
use shared::{Document, Error, Result, info, warn};

use crate::allowlist::Allowlist;
use crate::ecr::{Target, Waiting};
use crate::policy::{Counting, Evaluation, Policy, counts_json, evaluate};
use crate::readers::{Format, Report};
use crate::severity::Severity;

/// How many failing findings the output document lists (all are counted).
const LISTED: usize = 50;

/// Wait for an image's ECR scan, then pass or fail on a policy.
#[derive(Parser, Debug)]
#[command(
    name = "scan-gate",
    version,
    after_long_help = "EXAMPLES:
  # After img-push: wait for the scan (by digest), fail on any CRITICAL finding
  img-push | scan-gate --fail-on critical --junit reports/scan.xml

  # No CRITICAL, at most 5 HIGH unique CVEs, ignore findings with no fix, accepted risks in a file
  scan-gate --repository my-app --tag v1.2.3 --budget critical=0,high=5 --count cves \\
    --ignore-unfixed --allowlist security/allowlist.json

  # Repository without scan on push: start a basic scan, wait up to 10 minutes
  scan-gate --repository my-app --digest sha256:... --start-scan --timeout 10m

  # Offline, the same policy on a Trivy report
  trivy image -f json -o trivy.json my-app:1 && scan-gate --no-input --findings trivy.json --fail-on high

POLICY:
  A severity's limit is its --budget, else 0 when it is at or above --fail-on, else none.
  With neither flag the gate fails on CRITICAL. Severities, most severe first: critical, high,
  medium, low, informational, undefined, untriaged (the last two are below informational).
  Suppressed and closed findings never count. Where a scanner does not say whether a fix or an
  exploit exists, or gives no score, the finding counts: the gate fails closed.

ALLOWLIST (JSON):
  [{\"id\": \"CVE-2024-1234\", \"reason\": \"not reachable\", \"expires\": \"2025-06-30\",
    \"package\": \"openssl\", \"repository\": \"my-app\"}]     (package, repository optional)
  An entry applies through its expiry day (UTC). Expired entries are reported; entries that match
  nothing are warned about, and fail the gate with --strict-allowlist."
)]
// Flags are bools by nature; each is one independent switch.
#[allow(clippy::struct_excessive_bools)]
pub struct Cli {
    /// Repository name (default: the input document's `repository`).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Image digest (default: the document's `digest`). Preferred over a tag: tags move.
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,

    /// Image tag, used when there is no digest (default: the first of the document's `tags`).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Account that owns the registry (default: the caller's account).
    #[arg(long, value_name = "ACCOUNT")]
    pub registry_id: Option<String>,

    /// Fail on any finding of this severity or above (default: critical, unless --budget is given).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,

    /// Allowed count per severity, e.g. critical=0,high=5 (repeatable). A budget overrides --fail-on
    /// for its severity.
    #[arg(long = "budget", value_name = "SEVERITY=N,...", value_parser = policy::parse_budgets)]
    pub budgets: Vec<Vec<(Severity, u64)>>,

    /// List findings of this severity and above in reports (failing ones are always listed).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity, default_value = "low")]
    pub show: Severity,

    /// What to count: every finding, unique CVEs, or unique (CVE, package) pairs.
    #[arg(
        long = "count",
        value_enum,
        value_name = "WHAT",
        default_value = "findings"
    )]
    pub counting: Counting,

    /// Findings with no fix available do not count.
    #[arg(long)]
    pub ignore_unfixed: bool,

    /// Findings with a known score (Inspector or CVSS) below this do not count.
    #[arg(long, value_name = "SCORE", value_parser = parse_score)]
    pub min_score: Option<f64>,

    /// Only findings with a known exploit count (findings whose scanner does not say still count).
    #[arg(long)]
    pub exploitable_only: bool,

    /// Allowlist file (JSON): accepted findings, each with a reason and an expiry date.
    #[arg(long, value_name = "FILE")]
    pub allowlist: Option<PathBuf>,

    /// Fail the gate when an allowlist entry matches nothing.
    #[arg(long, requires = "allowlist")]
    pub strict_allowlist: bool,

    /// Read findings from this file instead of ECR ('-' for stdin, which then holds no documents):
    /// saved describe-image-scan-findings output, or a Trivy or Grype JSON report.
    #[arg(long, value_name = "FILE")]
    pub findings: Option<PathBuf>,

    /// Format of --findings.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "auto",
        requires = "findings"
    )]
    pub format: Format,

    /// Write a JUnit XML report here (for CodeBuild's reports: section), even when the gate fails.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Give up waiting for the scan after this long (e.g. 90s, 15m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = shared::duration::parse, default_value = "30m")]
    pub timeout: Duration,

    /// First pause between polls; it doubles up to 30s.
    #[arg(long, value_name = "DURATION", value_parser = shared::duration::parse, default_value = "5s")]
    pub poll_interval: Duration,

    /// For enhanced scans, pause between the two reads that must agree before findings count.
    #[arg(long, value_name = "DURATION", value_parser = shared::duration::parse, default_value = "10s")]
    pub settle: Duration,

    /// Start a basic scan when the image has none and the repository does not scan on push.
    #[arg(long)]
    pub start_scan: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

impl shared::cli::Cli for Cli {
    fn common(&self) -> &Common {
        &self.common
    }
}

fn parse_severity(text: &str) -> std::result::Result<Severity, String> {
    Severity::parse(text).ok_or_else(|| format!("'{text}' is not a severity ({})", severity::NAMES))
}

fn parse_score(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(score) if (0.0..=10.0).contains(&score) => Ok(score),
        _ => Err(format!("'{text}' is not a score from 0 to 10")),
    }
}

impl Cli {
    /// The policy the flags describe.
    #[must_use]
    pub fn policy(&self) -> Policy {
        let budgets: std::collections::BTreeMap<Severity, u64> =
            self.budgets.iter().flatten().copied().collect();
        let fail_on = match self.fail_on {
            Some(severity) => Some(severity),
            None if budgets.is_empty() => Some(Severity::Critical),
            None => None,
        };
        Policy {
            fail_on,
            budgets,
            show: self.show,
            counting: self.counting,
            ignore_unfixed: self.ignore_unfixed,
            min_score: self.min_score,
            exploitable_only: self.exploitable_only,
            strict_allowlist: self.strict_allowlist,
        }
    }
}

/// One image's outcome, kept for the JUnit report.
struct Gated {
    name: String,
    evaluation: Evaluation,
    error: Option<String>,
}

struct State {
    gated: Vec<Gated>,
}

struct Context<'a> {
    cli: &'a Cli,
    policy: Policy,
    allowlist: Allowlist,
    offline: Option<Report>,
    aws: Option<(Aws, aws_sdk_ecr::Client)>,
    today: NaiveDate,
    state: RefCell<State>,
}

fn read_file(path: &std::path::Path, what: &str) -> Result<String> {
    if path.as_os_str() == "-" {
        let bytes = files::read_limited(
            std::io::stdin().lock(),
            files::DATA_LIMIT,
            &format!("{what} from stdin"),
        )?;
        return String::from_utf8(bytes)
            .map_err(|_| Error::data(format!("the {what} from stdin is not UTF-8 text")));
    }
    files::read_text(path, files::DATA_LIMIT, what)
}

/// Runs `scan-gate`.
pub fn run(cli: &Cli) -> Result<Code> {
    // The report's path is checked before any scan is read or waited for.
    if let Some(path) = &cli.junit {
        shared::files::check_writable(path)?;
    }
    let allowlist = match &cli.allowlist {
        Some(path) => Allowlist::parse(&read_file(path, "allowlist")?).map_err(|e| {
            Error::data(format!("allowlist {}: {e}", path.display()))
                .with_hint("fix the file; run scan-gate --help for its format")
        })?,
        None => Allowlist::default(),
    };
    let offline = match &cli.findings {
        Some(path) => {
            let text = read_file(path, "findings")?;
            let shown = if path.as_os_str() == "-" {
                "stdin".into()
            } else {
                path.display().to_string()
            };
            Some(readers::parse(&text, cli.format).map_err(|e| {
                Error::data(format!("findings {shown}: {e}"))
                    .with_hint("give saved describe-image-scan-findings output, or a Trivy or Grype JSON report")
            })?)
        }
        None => None,
    };
    let mut common = cli.common.clone();
    if cli.findings.as_ref().is_some_and(|p| p.as_os_str() == "-") {
        common.no_input = true;
    }
    shared::cli::runtime()?.block_on(async {
        let aws = if offline.is_some() {
            None
        } else {
            let aws = Aws::load(&cli.aws).await?;
            let ecr = aws.ecr();
            Some((aws, ecr))
        };
        let context = Context {
            cli,
            policy: cli.policy(),
            allowlist,
            offline,
            aws,
            today: chrono::Utc::now().date_naive(),
            state: RefCell::new(State { gated: Vec::new() }),
        };
        shared::cli::pipeline(&common, |doc| gate(&context, doc)).await
    })
}

fn target(cli: &Cli, doc: &Document) -> Result<Target> {
    let repository = cli
        .repository
        .as_deref()
        .or_else(|| doc.str("repository"))
        .ok_or_else(|| {
            Error::data("no repository named")
                .with_hint("pass --repository NAME, or give a document with a repository field (from ecr-repo or img-tag)")
        })?
        .to_owned();
    shared::names::check_repository(&repository)?;
    let digest = match (&cli.digest, &cli.tag) {
        (Some(digest), _) => Some(digest.clone()),
        (None, Some(_)) => None,
        (None, None) => doc.str("digest").map(ToOwned::to_owned),
    };
    if let Some(digest) = &digest {
        shared::names::check_digest(digest)?;
    }
    let tag = cli
        .tag
        .clone()
        .or_else(|| doc.strings("tags").first().map(|t| (*t).to_owned()));
    if digest.is_none() && tag.is_none() {
        return Err(
            Error::data(format!("no image named in repository {repository}")).with_hint(
                "pass --digest or --tag, or give a document with digest or tags (from img-push)",
            ),
        );
    }
    Ok(Target {
        repository,
        registry_id: cli.registry_id.clone(),
        digest,
        tag,
    })
}

async fn gate(ctx: &Context<'_>, mut doc: Document) -> Result<Answer> {
    let cli = ctx.cli;
    let (scan, passed) = match (&ctx.offline, &ctx.aws) {
        (Some(report), _) => {
            let repository = cli
                .repository
                .clone()
                .or_else(|| doc.str("repository").map(ToOwned::to_owned));
            let name = repository.clone().unwrap_or_else(|| "image".into());
            judge(ctx, report, name, repository.as_deref(), "file")?
        }
        (None, Some((aws, ecr))) => {
            let target = target(cli, &doc)?;
            // ECR cannot scan a manifest list or image index: gate each platform image.
            if let Some(children) = ecr::platform_images(aws, ecr, &target).await? {
                info!(
                    "{} is a multi-platform image: gating {} platform images",
                    target.display(),
                    children.len()
                );
                let mut images = Vec::new();
                let mut passed = true;
                for child in children {
                    let one = ecr::Target {
                        digest: Some(child.digest.clone()),
                        tag: None,
                        ..target.clone()
                    };
                    let report = wait(ctx, aws, ecr, &one).await?;
                    let (mut scan, ok) =
                        judge(ctx, &report, one.display(), Some(&one.repository), "ecr")?;
                    scan["platform"] = json!(child.platform);
                    scan["digest"] = json!(child.digest);
                    passed &= ok;
                    images.push(scan);
                }
                let scan = json!({
                    "image": target.display(),
                    "multi_platform": true,
                    "passed": passed,
                    "verdict": if passed { "pass" } else { "fail" },
                    "platforms": images,
                });
                (scan, passed)
            } else {
                let report = wait(ctx, aws, ecr, &target).await?;
                judge(
                    ctx,
                    &report,
                    target.display(),
                    Some(&target.repository),
                    "ecr",
                )?
            }
        }
        (None, None) => return Err(Error::internal("no findings source")),
    };
    doc.set("scan", scan);
    Ok(Answer::no_if(!passed, doc))
}

/// Waits for the scan of one image; a failure is recorded in the report before it is returned.
async fn wait(
    ctx: &Context<'_>,
    aws: &Aws,
    ecr: &aws_sdk_ecr::Client,
    target: &ecr::Target,
) -> Result<Report> {
    let cli = ctx.cli;
    let how = Waiting {
        timeout: cli.timeout,
        poll: cli.poll_interval,
        settle: cli.settle,
        start_scan: cli.start_scan,
    };
    match ecr::wait(aws, ecr, target, how).await {
        Ok(report) => Ok(report),
        Err(err) => {
            record(
                ctx,
                Gated {
                    name: target.display(),
                    evaluation: empty(ctx),
                    error: Some(err.to_string()),
                },
            )?;
            Err(err)
        }
    }
}

/// Judges one image's findings: fails closed on a scan without a verdict, else evaluates the
/// policy, prints the summary, records the outcome, and returns the `scan` object and whether
/// the image passed.
fn judge(
    ctx: &Context<'_>,
    report: &Report,
    name: String,
    repository: Option<&str>,
    source: &str,
) -> Result<(Value, bool)> {
    if let Some(status) = report.status.as_deref()
        && !matches!(status, "COMPLETE" | "ACTIVE")
    {
        let description = report.description.as_deref().unwrap_or("no description");
        let err = Error::new(
            exit::SCAN_FAILED,
            format!("the saved scan of {name} is {status}, not COMPLETE: {description}"),
        )
        .with_hint(ecr::failed_status_hint(status));
        record(
            ctx,
            Gated {
                name,
                evaluation: empty(ctx),
                error: Some(err.to_string()),
            },
        )?;
        return Err(err);
    }
    let evaluation = evaluate(
        &ctx.policy,
        &report.findings,
        &ctx.allowlist,
        repository,
        ctx.today,
    );
    summarize(ctx, &name, report, &evaluation);
    let scan = scan_json(ctx, report, &evaluation, &name, source);
    let passed = evaluation.passed;
    record(
        ctx,
        Gated {
            name,
            evaluation,
            error: None,
        },
    )?;
    Ok((scan, passed))
}

fn empty(ctx: &Context<'_>) -> Evaluation {
    evaluate(&ctx.policy, &[], &Allowlist::default(), None, ctx.today)
}

/// Keeps the outcome and rewrites the JUnit file with every image so far, so the report is
/// complete whenever the tool stops.
fn record(ctx: &Context<'_>, gated: Gated) -> Result<()> {
    let mut state = ctx.state.borrow_mut();
    state.gated.push(gated);
    let Some(path) = &ctx.cli.junit else {
        return Ok(());
    };
    let reasons: Vec<String> = ctx
        .allowlist
        .entries
        .iter()
        .map(|e| e.reason.clone())
        .collect();
    let suites: Vec<junit::Suite> = state
        .gated
        .iter()
        .map(|g| junit::Suite {
            name: g.name.clone(),
            evaluation: &g.evaluation,
            reasons: reasons.clone(),
            show: ctx.policy.show,
            error: g.error.clone(),
        })
        .collect();
    shared::files::write_atomic(path, junit::render(&suites).as_bytes(), None)
}

fn counts_line(counts: &policy::Counts) -> String {
    let parts: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn summarize(ctx: &Context<'_>, name: &str, report: &Report, eval: &Evaluation) {
    let status = report.status.as_deref().unwrap_or("report");
    let ignored: u64 = eval.ignored.values().sum();
    info!(
        "{name}: {status} ({}), {} findings, {ignored} not counted; {} before the allowlist: {}; after: {}",
        report.scanner,
        eval.total,
        ctx.policy.counting.as_str(),
        counts_line(&eval.before),
        counts_line(&eval.after)
    );
    for (index, entry) in ctx.allowlist.entries.iter().enumerate() {
        if let Some(hits) = eval.expired[index] {
            warn!(
                "allowlist entry {} ({}) expired on {} and no longer applies{}",
                index + 1,
                entry.id,
                entry.expires,
                if hits > 0 {
                    format!(" ({hits} findings count again)")
                } else {
                    String::new()
                }
            );
        }
    }
    for index in eval.unused() {
        let entry = &ctx.allowlist.entries[index];
        warn!(
            "allowlist entry {} ({}) matched no finding: remove it if it is no longer needed",
            index + 1,
            entry.id
        );
    }
    for unit in eval.failing().take(10) {
        let f = &unit.finding;
        let fixed = f
            .fixed_in
            .as_deref()
            .map(|v| format!(", fixed in {v}"))
            .unwrap_or_default();
        info!("  {} {}{fixed}", f.severity, f.label());
    }
    let failing = eval.failing().count();
    if failing > 10 {
        info!("  ... and {} more failing", failing - 10);
    }
    if eval.passed {
        info!("{name}: PASS");
    } else {
        info!("{name}: FAIL: {}", eval.reasons.join("; "));
    }
}

fn scan_json(
    ctx: &Context<'_>,
    report: &Report,
    eval: &Evaluation,
    name: &str,
    source: &str,
) -> Value {
    let failing: Vec<Value> = eval
        .failing()
        .take(LISTED)
        .map(|u| {
            let mut v = u.finding.to_json();
            if let Value::Object(map) = &mut v {
                map.insert("findings".into(), u.findings.into());
            }
            v
        })
        .collect();
    let entry = |i: usize| {
        let e = &ctx.allowlist.entries[i];
        json!({"id": e.id, "reason": e.reason, "expires": e.expires, "package": e.package, "repository": e.repository})
    };
    let applied: Vec<Value> = (0..ctx.allowlist.entries.len())
        .filter(|&i| eval.matched[i] > 0)
        .map(|i| {
            let mut v = entry(i);
            v["findings"] = eval.matched[i].into();
            v
        })
        .collect();
    let expired: Vec<Value> = (0..ctx.allowlist.entries.len())
        .filter_map(|i| {
            let hits = eval.expired[i]?;
            let mut v = entry(i);
            v["findings"] = hits.into();
            Some(v)
        })
        .collect();
    let unused: Vec<Value> = eval.unused().into_iter().map(entry).collect();
    let mut scan = json!({
        "image": name,
        "source": source,
        "scanner": report.scanner,
        "status": report.status,
        "description": report.description,
        "verdict": if eval.passed { "pass" } else { "fail" },
        "reasons": eval.reasons,
        "policy": ctx.policy.to_json(),
        "findings_total": eval.total,
        "not_counted": eval.ignored,
        "counts": {
            "before_allowlist": counts_json(&eval.before),
            "after_allowlist": counts_json(&eval.after),
        },
        "failing": failing,
        "failing_total": eval.failing().count(),
        "allowlist": {
            "file": ctx.cli.allowlist.as_ref().map(|p| p.display().to_string()),
            "applied": applied,
            "expired": expired,
            "unused": unused,
        },
    });
    if !report.severity_counts.is_empty() {
        scan["reported_severity_counts"] = json!(report.severity_counts);
    }
    scan
}

#[cfg(test)]
mod tests;
