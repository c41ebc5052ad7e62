//! Waiting for an image's ECR scan and reading every page of its findings.
//!
//! ECR's own waiter (`aws ecr wait image-scan-complete`) fails on `ScanNotFound` right after a
//! push and never accepts an enhanced scan's `ACTIVE`. Here: `ScanNotFound`, `PENDING` and
//! `IN_PROGRESS` mean "keep waiting" (with backoff, up to the deadline); `COMPLETE` and
//! `ACTIVE` are answers, re-read for enhanced scans until two reads agree (Inspector's findings
//! can lag its status); every other status, known today or not, fails closed.

use std::collections::HashSet;
use std::time::Duration;

use aws::Aws;
use aws_sdk_ecr::Client;
use aws_sdk_ecr::operation::describe_image_scan_findings::{
    DescribeImageScanFindingsError, DescribeImageScanFindingsOutput,
};
use aws_sdk_ecr::operation::start_image_scan::StartImageScanError;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration};
use shared::exit;
use shared::{Error, Result, info, verbose, warn};
use tokio::time::Instant;

use crate::readers::{EnhancedParts, Report, basic_finding};

/// The image to gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Repository name.
    pub repository: String,
    /// Registry (account) id, when not the caller's.
    pub registry_id: Option<String>,
    /// Manifest digest (preferred: tags move).
    pub digest: Option<String>,
    /// Tag, used when there is no digest.
    pub tag: Option<String>,
}

impl Target {
    /// `repository@digest` or `repository:tag`.
    #[must_use]
    pub fn display(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("{}@{digest}", self.repository),
            (None, Some(tag)) => format!("{}:{tag}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }

    fn image_id(&self) -> ImageIdentifier {
        // One of the two, never both: the digest when known.
        match &self.digest {
            Some(digest) => ImageIdentifier::builder().image_digest(digest).build(),
            None => ImageIdentifier::builder()
                .set_image_tag(self.tag.clone())
                .build(),
        }
    }
}

/// How to wait.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    /// Give up after this long.
    pub timeout: Duration,
    /// The first pause between polls; it doubles up to [`MAX_POLL`].
    pub poll: Duration,
    /// Pause between the reads that must agree for an enhanced scan.
    pub settle: Duration,
    /// Start a basic scan when there is none and the repository does not scan on push.
    pub start_scan: bool,
}

/// The longest pause between polls.
pub const MAX_POLL: Duration = Duration::from_secs(30);

/// The statuses that mean "not yet".
const WAITING: &[&str] = &["PENDING", "IN_PROGRESS"];
/// The statuses that carry an answer.
const DONE: &[&str] = &["COMPLETE", "ACTIVE"];

/// What a status that gives no verdict means, and what to do about it.
#[must_use]
pub fn failed_status_hint(status: &str) -> &'static str {
    match status {
        "FAILED" => {
            "ECR could not scan the image: push it again, or scan it with Trivy or Grype and pass --findings"
        }
        "UNSUPPORTED_IMAGE" => {
            "ECR does not support this image's operating system or format: scan it with Trivy or Grype and pass --findings"
        }
        "LIMIT_EXCEEDED" => {
            "ECR allows one basic scan per image per 24 hours: wait, or gate on the existing scan"
        }
        "SCAN_ELIGIBILITY_EXPIRED" => {
            "the image is past the registry's continuous-scan duration: push it again or lengthen the duration"
        }
        "FINDINGS_UNAVAILABLE" => {
            "ECR has no findings for this image (for example, it was deleted and restored): push it again"
        }
        "IMAGE_ARCHIVED" => "the image is archived: restore it before gating on it",
        _ => "scan-gate does not know this status and fails closed: check the ECR console",
    }
}

enum Read {
    NoScan,
    Report(Report),
}

use shared::media::{MANIFEST_TYPES, is_index};
use shared::platform::Platform;

/// One platform image of a multi-platform image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformImage {
    /// Its manifest digest.
    pub digest: String,
    /// `os/architecture[/variant]`.
    pub platform: String,
}

/// The platform images a manifest list or image index references, from its manifest JSON;
/// `None` when the manifest is a single image. Attestation manifests (`unknown/unknown`) are
/// left out: they hold no filesystem to scan.
#[must_use]
pub fn index_children(manifest: &str) -> Option<Vec<PlatformImage>> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let media_type = value.get("mediaType").and_then(serde_json::Value::as_str);
    let manifests = value.get("manifests")?.as_array()?;
    if media_type.is_some_and(|t| !is_index(t)) {
        return None;
    }
    Some(
        manifests
            .iter()
            .filter_map(|m| {
                let digest = m.get("digest")?.as_str()?.to_owned();
                // Every part that is missing is "unknown", so that an entry naming only
                // some is still gated; only an attestation (unknown/unknown) is not.
                let platform = m.get("platform");
                let part = |name: &str| {
                    platform
                        .and_then(|p| p.get(name))
                        .and_then(serde_json::Value::as_str)
                        .filter(|v| !v.is_empty())
                        .unwrap_or("unknown")
                        .to_owned()
                };
                let name = Platform {
                    os: part("os"),
                    architecture: part("architecture"),
                    variant: platform
                        .and_then(|p| p.get("variant"))
                        .and_then(serde_json::Value::as_str)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned),
                    os_version: None,
                }
                .name();
                (name != "unknown/unknown").then_some(PlatformImage {
                    digest,
                    platform: name,
                })
            })
            .collect(),
    )
}

/// Reads the image's manifest and, when it is a manifest list or image index (which ECR cannot
/// scan), returns the platform images to gate instead. `None` for a single image, or an image
/// not found yet (waiting for its scan then says what is missing).
pub async fn platform_images(
    aws: &Aws,
    ecr: &Client,
    target: &Target,
) -> Result<Option<Vec<PlatformImage>>> {
    let output = ecr
        .batch_get_image()
        .repository_name(&target.repository)
        .set_registry_id(target.registry_id.clone())
        .image_ids(target.image_id())
        .set_accepted_media_types(Some(
            MANIFEST_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        ))
        .send()
        .await
        .map_err(|e| aws.error(&format!("reading the manifest of {}", target.display()), &e))?;
    let Some(manifest) = output.images().first().and_then(|i| i.image_manifest()) else {
        return Ok(None);
    };
    match index_children(manifest) {
        Some(children) if children.is_empty() => Err(Error::data(format!(
            "{} is an image index with no platform images to scan",
            target.display()
        ))),
        other => Ok(other),
    }
}

/// Waits for the scan of `target` and returns its complete findings.
pub async fn wait(aws: &Aws, ecr: &Client, target: &Target, how: Waiting) -> Result<Report> {
    let deadline = Instant::now() + how.timeout;
    let shown = target.display();
    let mut delay = how.poll.max(Duration::from_millis(100));
    let mut tried_start = false;
    let mut refused: Option<String> = None;
    let mut last: String;
    let mut previous: Option<Report> = None;
    loop {
        match read(aws, ecr, target).await? {
            Read::NoScan => {
                if how.start_scan && !tried_start {
                    tried_start = true;
                    refused = start(aws, ecr, target).await?;
                }
                last = "no scan yet (ScanNotFound)".into();
            }
            Read::Report(report) => {
                let status = report.status.clone().unwrap_or_default();
                if DONE.contains(&status.as_str()) {
                    let settles = status == "ACTIVE" || report.scanner == "ecr-enhanced";
                    if !settles {
                        return Ok(report);
                    }
                    if previous.as_ref().is_some_and(|p| same(p, &report)) {
                        return Ok(report);
                    }
                    verbose!(
                        "{shown}: {status} with {} findings; reading again in {:?} to let the findings settle",
                        report.findings.len(),
                        how.settle
                    );
                    previous = Some(report);
                    if Instant::now() + how.settle > deadline {
                        return Err(timeout(
                            &shown,
                            how.timeout,
                            "findings still changing",
                            refused.as_deref(),
                        ));
                    }
                    tokio::time::sleep(how.settle).await;
                    continue;
                }
                if !WAITING.contains(&status.as_str()) {
                    let description = report.description.as_deref().unwrap_or("no description");
                    return Err(Error::new(
                        exit::SCAN_FAILED,
                        format!("the scan of {shown} ended {status}: {description}"),
                    )
                    .with_hint(failed_status_hint(&status)));
                }
                previous = None;
                last = status;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout(&shown, how.timeout, &last, refused.as_deref()));
        }
        verbose!("{shown}: {last}; polling again in {delay:?}");
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(MAX_POLL);
    }
}

fn timeout(shown: &str, after: Duration, last: &str, refused: Option<&str>) -> Error {
    let refused = refused.map(|r| format!("; {r}")).unwrap_or_default();
    Error::timeout(format!(
        "the scan of {shown} gave no answer within {} (last: {last}{refused})",
        shared::duration::show(after)
    ))
    .with_hint("raise --timeout, or pass --start-scan if the repository does not scan on push")
}

/// Whether two reads of an enhanced scan agree.
fn same(a: &Report, b: &Report) -> bool {
    let key = |r: &Report| {
        let mut items: Vec<String> = r
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{}|{}|{}|{:?}|{:?}",
                    f.id,
                    f.severity,
                    f.package.as_deref().unwrap_or(""),
                    f.state,
                    f.fix
                )
            })
            .collect();
        items.sort_unstable();
        (r.status.clone(), items)
    };
    key(a) == key(b)
}

async fn read(aws: &Aws, ecr: &Client, target: &Target) -> Result<Read> {
    let shown = target.display();
    let mut report = Report::default();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    loop {
        let result = ecr
            .describe_image_scan_findings()
            .repository_name(&target.repository)
            .set_registry_id(target.registry_id.clone())
            .image_id(target.image_id())
            .max_results(1000)
            .set_next_token(token.clone())
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) => {
                let service = err.as_service_error();
                if service.is_some_and(DescribeImageScanFindingsError::is_scan_not_found_exception)
                {
                    return Ok(Read::NoScan);
                }
                if service.is_some_and(DescribeImageScanFindingsError::is_image_not_found_exception)
                {
                    return Err(
                        Error::data(format!("image {shown} is not in ECR")).with_hint(
                            "push it first (img-push), or check the digest, tag and --registry-id",
                        ),
                    );
                }
                if service
                    .is_some_and(DescribeImageScanFindingsError::is_repository_not_found_exception)
                {
                    return Err(Error::data(format!(
                        "repository {} does not exist",
                        target.repository
                    ))
                    .with_hint(
                        "create it with ecr-repo, or check --repository and --registry-id",
                    ));
                }
                return Err(aws.error(&format!("reading the scan findings of {shown}"), &err));
            }
        };
        let next = output
            .next_token()
            .filter(|t| !t.is_empty())
            .map(ToOwned::to_owned);
        let page = convert(&output);
        let done = page.status.as_deref().is_some_and(|s| DONE.contains(&s));
        report.merge(page);
        match next {
            Some(next) if done => {
                if !seen.insert(next.clone()) {
                    return Err(Error::unavailable(format!(
                        "reading the scan findings of {shown}: the ECR API at {} returned the same page token twice",
                        aws.endpoint()
                    ))
                    .with_hint("the endpoint does not page correctly: check AWS_ENDPOINT_URL_ECR"));
                }
                token = Some(next);
            }
            _ => return Ok(Read::Report(report)),
        }
    }
}

/// One page of DescribeImageScanFindings as a [`Report`].
#[must_use]
pub fn convert(output: &DescribeImageScanFindingsOutput) -> Report {
    let mut report = Report {
        scanner: "ecr-basic".into(),
        ..Report::default()
    };
    if let Some(status) = output.image_scan_status() {
        report.status = status.status().map(|s| s.as_str().to_owned());
        report.description = status.description().map(ToOwned::to_owned);
    }
    let Some(findings) = output.image_scan_findings() else {
        return report;
    };
    if let Some(counts) = findings.finding_severity_counts() {
        for (severity, n) in counts {
            report
                .severity_counts
                .insert(severity.as_str().to_owned(), u64::try_from(*n).unwrap_or(0));
        }
    }
    for f in findings.findings() {
        let attributes: Vec<(String, String)> = f
            .attributes()
            .iter()
            .map(|a| (a.key().to_owned(), a.value().unwrap_or_default().to_owned()))
            .collect();
        report.findings.push(basic_finding(
            f.name().unwrap_or("unnamed finding"),
            f.severity().map_or("", |s| s.as_str()),
            f.uri(),
            f.description(),
            &attributes,
        ));
    }
    if !findings.enhanced_findings().is_empty() {
        report.scanner = "ecr-enhanced".into();
    }
    for f in findings.enhanced_findings() {
        let details = f.package_vulnerability_details();
        let parts = EnhancedParts {
            id: details
                .and_then(|d| d.vulnerability_id())
                .map(ToOwned::to_owned),
            severity: f.severity().map(ToOwned::to_owned),
            status: f.status().map(ToOwned::to_owned),
            fix_available: f.fix_available().map(ToOwned::to_owned),
            exploit_available: f.exploit_available().map(ToOwned::to_owned),
            score: Some(f.score()),
            cvss: details
                .and_then(|d| d.cvss().first())
                .map(aws_sdk_ecr::types::CvssScore::base_score),
            packages: details
                .map(|d| {
                    d.vulnerable_packages()
                        .iter()
                        .map(|p| {
                            (
                                p.name().unwrap_or_default().to_owned(),
                                p.version().map(ToOwned::to_owned),
                                p.fixed_in_version()
                                    .filter(|v| *v != "NotAvailable")
                                    .map(ToOwned::to_owned),
                            )
                        })
                        .filter(|(name, _, _)| !name.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            title: f.title().map(ToOwned::to_owned),
            uri: details.and_then(|d| d.source_url()).map(ToOwned::to_owned),
        };
        if let Some(finding) = parts.finding() {
            report.findings.push(finding);
        }
    }
    report
}

/// Starts a basic scan when the repository does not scan on push. Returns ECR's refusal, if
/// it refused because the image was scanned in the last 24 hours (the wait goes on: that scan's
/// findings may yet appear).
async fn start(aws: &Aws, ecr: &Client, target: &Target) -> Result<Option<String>> {
    let name = &target.repository;
    let repos = ecr
        .describe_repositories()
        .repository_names(name)
        .set_registry_id(target.registry_id.clone())
        .send()
        .await
        .map_err(|e| aws.error(&format!("looking up repository {name}"), &e))?;
    let scans_on_push = repos
        .repositories()
        .first()
        .and_then(|r| r.image_scanning_configuration())
        .is_some_and(ImageScanningConfiguration::scan_on_push);
    if scans_on_push {
        info!("repository {name} scans on push: waiting for that scan");
        return Ok(None);
    }
    let shown = target.display();
    match ecr
        .start_image_scan()
        .repository_name(name)
        .set_registry_id(target.registry_id.clone())
        .image_id(target.image_id())
        .send()
        .await
    {
        Ok(_) => {
            info!("started a basic scan of {shown}");
            Ok(None)
        }
        Err(err) => {
            let service = err.as_service_error();
            if service.is_some_and(StartImageScanError::is_limit_exceeded_exception) {
                let text =
                    "ECR refused to start a scan: it allows one basic scan per image per 24 hours"
                        .to_owned();
                warn!("{text}; waiting for the existing scan of {shown}");
                return Ok(Some(text));
            }
            if service.is_some_and(StartImageScanError::is_unsupported_image_type_exception) {
                return Err(Error::new(
                    exit::SCAN_FAILED,
                    format!("ECR cannot scan {shown}: the image type is not supported"),
                )
                .with_hint(failed_status_hint("UNSUPPORTED_IMAGE")));
            }
            Err(aws.error(&format!("starting a scan of {shown}"), &err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_children_are_its_platform_images() {
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let children = index_children(index).unwrap();
        assert_eq!(
            children,
            [
                PlatformImage {
                    digest: "sha256:aa".into(),
                    platform: "linux/amd64".into()
                },
                PlatformImage {
                    digest: "sha256:bb".into(),
                    platform: "linux/arm64/v8".into()
                },
            ]
        );
        let single = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(index_children(single), None);
    }
}
