//! Findings from files: saved `aws ecr describe-image-scan-findings` output, Trivy and Grype JSON
//! reports. All become the same [`Report`], so the same policy applies whatever scanned the image.
//!
//! Readers are strict about structure (a Trivy report without `Results` is refused rather than
//! read as "no findings") and lenient about values: an unknown severity becomes UNDEFINED and an
//! unknown status open, so a finding is never lost to a name we do not know.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::finding::{Finding, Fix, State};
use crate::severity::Severity;

/// The format of a findings file.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Decide from the content.
    Auto,
    /// `aws ecr describe-image-scan-findings` output (one response, or several pages one after another).
    Ecr,
    /// `trivy image --format json`.
    Trivy,
    /// `grype -o json`.
    Grype,
}

/// What a scan reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Which scanner: `ecr-basic`, `ecr-enhanced`, `trivy`, `grype`.
    pub scanner: String,
    /// ECR's scan status (`COMPLETE`, `ACTIVE`, `FAILED`...); `None` for other scanners.
    pub status: Option<String>,
    /// ECR's description of the status.
    pub description: Option<String>,
    /// Every finding, open or not.
    pub findings: Vec<Finding>,
    /// ECR's own count per severity, when it gives one.
    pub severity_counts: BTreeMap<String, u64>,
}

impl Report {
    /// Adds another page of the same scan.
    pub fn merge(&mut self, page: Report) {
        if self.scanner.is_empty() || page.scanner == "ecr-enhanced" {
            self.scanner = page.scanner;
        }
        if page.status.is_some() {
            self.status = page.status;
            self.description = page.description;
        }
        self.findings.extend(page.findings);
        if self.severity_counts.is_empty() {
            self.severity_counts = page.severity_counts;
        }
    }
}

/// Reads a findings file's text. The error is a sentence without the file name.
pub fn parse(text: &str, format: Format) -> Result<Report, String> {
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        values.push(value.map_err(|e| format!("not valid JSON: {e}"))?);
    }
    let Some(first) = values.first() else {
        return Err("the file is empty".into());
    };
    let format = match format {
        Format::Auto => detect(first)?,
        other => other,
    };
    if values.len() > 1 && format != Format::Ecr {
        return Err("holds several JSON documents; only ECR output may have several pages".into());
    }
    match format {
        Format::Ecr => {
            let mut report = Report::default();
            for (n, value) in values.iter().enumerate() {
                let page = ecr(value).map_err(|e| {
                    if values.len() > 1 {
                        format!("page {}: {e}", n + 1)
                    } else {
                        e
                    }
                })?;
                report.merge(page);
            }
            Ok(report)
        }
        Format::Trivy => trivy(first),
        Format::Grype => grype(first),
        Format::Auto => Err("cannot tell the format".into()),
    }
}

fn detect(value: &Value) -> Result<Format, String> {
    let Value::Object(map) = value else {
        return Err("expected a JSON object".into());
    };
    if map.contains_key("imageScanFindings") || map.contains_key("imageScanStatus") {
        Ok(Format::Ecr)
    } else if map.contains_key("Results") || map.contains_key("ArtifactName") {
        Ok(Format::Trivy)
    } else if map.contains_key("matches") {
        Ok(Format::Grype)
    } else {
        Err("is neither describe-image-scan-findings output (imageScanFindings), a Trivy report (Results) nor a Grype report (matches)".into())
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(ToOwned::to_owned)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn array<'a>(value: &'a Value, key: &str, at: &str) -> Result<&'a [Value], String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{at}{key} is not an array")),
    }
}

/// A basic-scan finding from its parts: `attributes` are ECR's key/value pairs
/// (`package_name`, `package_version`, `CVSS3_SCORE`, `CVSS2_SCORE`).
#[must_use]
pub fn basic_finding(
    name: &str,
    severity: &str,
    uri: Option<&str>,
    description: Option<&str>,
    attributes: &[(String, String)],
) -> Finding {
    let attr = |key: &str| {
        attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let mut finding = Finding::new(name, Severity::from_scanner(severity));
    finding.package = attr("package_name");
    finding.version = attr("package_version");
    finding.score = attr("CVSS3_SCORE")
        .or_else(|| attr("CVSS2_SCORE"))
        .and_then(|s| s.parse().ok());
    finding.uri = uri.map(ToOwned::to_owned);
    finding.title = description.map(first_line);
    finding
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() > 200 {
        let cut: String = line.chars().take(199).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

fn ecr(value: &Value) -> Result<Report, String> {
    if !value.is_object() {
        return Err("expected a JSON object".into());
    }
    let mut report = Report {
        scanner: "ecr-basic".into(),
        ..Report::default()
    };
    if let Some(status) = value.get("imageScanStatus") {
        report.status = text(status, "status");
        report.description = text(status, "description");
    }
    let Some(findings) = value.get("imageScanFindings") else {
        return Ok(report);
    };
    if let Some(Value::Object(counts)) = findings.get("findingSeverityCounts") {
        for (severity, n) in counts {
            report
                .severity_counts
                .insert(severity.clone(), n.as_u64().unwrap_or(0));
        }
    }
    for (n, item) in array(findings, "findings", "imageScanFindings.")?
        .iter()
        .enumerate()
    {
        let name = text(item, "name")
            .ok_or_else(|| format!("imageScanFindings.findings[{n}] has no name"))?;
        let attributes: Vec<(String, String)> = array(item, "attributes", "finding.")?
            .iter()
            .filter_map(|a| Some((text(a, "key")?, text(a, "value").unwrap_or_default())))
            .collect();
        report.findings.push(basic_finding(
            &name,
            item.get("severity").and_then(Value::as_str).unwrap_or(""),
            item.get("uri").and_then(Value::as_str),
            item.get("description").and_then(Value::as_str),
            &attributes,
        ));
    }
    let enhanced = array(findings, "enhancedFindings", "imageScanFindings.")?;
    if !enhanced.is_empty() {
        report.scanner = "ecr-enhanced".into();
    }
    for (n, item) in enhanced.iter().enumerate() {
        report.findings.push(
            enhanced_finding(item)
                .map_err(|e| format!("imageScanFindings.enhancedFindings[{n}] {e}"))?,
        );
    }
    Ok(report)
}

/// The parts of an enhanced finding the policy reads, from the SDK or from JSON.
#[derive(Debug, Default)]
pub struct EnhancedParts {
    /// `packageVulnerabilityDetails.vulnerabilityId`, else the title.
    pub id: Option<String>,
    /// `severity`.
    pub severity: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `fixAvailable`.
    pub fix_available: Option<String>,
    /// `exploitAvailable`.
    pub exploit_available: Option<String>,
    /// `score` (Inspector score), when above zero.
    pub score: Option<f64>,
    /// The first CVSS base score.
    pub cvss: Option<f64>,
    /// `(name, version, fixedInVersion)` of each vulnerable package.
    pub packages: Vec<(String, Option<String>, Option<String>)>,
    /// `title`.
    pub title: Option<String>,
    /// `packageVulnerabilityDetails.sourceUrl`.
    pub uri: Option<String>,
}

impl EnhancedParts {
    /// The finding.
    #[must_use]
    pub fn finding(self) -> Option<Finding> {
        let id = self.id.or_else(|| self.title.clone())?;
        let mut finding = Finding::new(
            id,
            Severity::from_scanner(self.severity.as_deref().unwrap_or("")),
        );
        finding.state = State::from_ecr(self.status.as_deref());
        finding.fix = Fix::from_ecr(self.fix_available.as_deref());
        finding.exploit = match self
            .exploit_available
            .map(|s| s.to_ascii_uppercase())
            .as_deref()
        {
            Some("YES") => Some(true),
            Some("NO") => Some(false),
            _ => None,
        };
        finding.score = self.score.filter(|s| *s > 0.0).or(self.cvss);
        if !self.packages.is_empty() {
            let names: Vec<&str> = self.packages.iter().map(|(n, _, _)| n.as_str()).collect();
            finding.package = Some(names.join(", "));
            finding.version.clone_from(&self.packages[0].1);
            finding.fixed_in = self.packages.iter().find_map(|(_, _, f)| f.clone());
        }
        finding.title = self.title.as_deref().map(first_line);
        finding.uri = self.uri;
        Some(finding)
    }
}

fn enhanced_finding(item: &Value) -> Result<Finding, String> {
    let details = item
        .get("packageVulnerabilityDetails")
        .unwrap_or(&Value::Null);
    let parts = EnhancedParts {
        id: text(details, "vulnerabilityId"),
        severity: text(item, "severity"),
        status: text(item, "status"),
        fix_available: text(item, "fixAvailable"),
        exploit_available: text(item, "exploitAvailable"),
        score: item.get("score").and_then(number),
        cvss: array(details, "cvss", "")?
            .iter()
            .find_map(|c| c.get("baseScore").and_then(number)),
        packages: array(details, "vulnerablePackages", "")?
            .iter()
            .filter_map(|p| {
                Some((
                    text(p, "name")?,
                    text(p, "version"),
                    text(p, "fixedInVersion").filter(|v| v != "NotAvailable"),
                ))
            })
            .collect(),
        title: text(item, "title"),
        uri: text(details, "sourceUrl"),
    };
    parts
        .finding()
        .ok_or_else(|| "has neither a vulnerabilityId nor a title".to_owned())
}

fn trivy(value: &Value) -> Result<Report, String> {
    let mut report = Report {
        scanner: "trivy".into(),
        ..Report::default()
    };
    if value.get("Results").is_none() {
        // Trivy leaves Results out when it found nothing to scan, and always writes ArtifactName.
        if value.get("ArtifactName").is_none() {
            return Err("is not a Trivy JSON report (no Results)".into());
        }
        return Ok(report);
    }
    for (r, result) in array(value, "Results", "")?.iter().enumerate() {
        for (n, item) in array(result, "Vulnerabilities", "Results[].")?
            .iter()
            .enumerate()
        {
            let id = text(item, "VulnerabilityID").ok_or_else(|| {
                format!("Results[{r}].Vulnerabilities[{n}] has no VulnerabilityID")
            })?;
            let mut finding = Finding::new(
                id,
                Severity::from_scanner(item.get("Severity").and_then(Value::as_str).unwrap_or("")),
            );
            finding.package = text(item, "PkgName");
            finding.version = text(item, "InstalledVersion");
            finding.fixed_in = text(item, "FixedVersion");
            let status = text(item, "Status")
                .unwrap_or_default()
                .to_ascii_lowercase();
            finding.fix = if finding.fixed_in.is_some() || status == "fixed" {
                Fix::Available
            } else if matches!(
                status.as_str(),
                "affected" | "will_not_fix" | "fix_deferred" | "end_of_life"
            ) {
                Fix::NotAvailable
            } else {
                Fix::Unknown
            };
            if status == "not_affected" {
                finding.state = State::Closed;
            }
            finding.score = item
                .get("CVSS")
                .and_then(Value::as_object)
                .and_then(|sources| {
                    sources
                        .values()
                        .filter_map(|s| {
                            s.get("V3Score")
                                .or_else(|| s.get("V2Score"))
                                .and_then(number)
                        })
                        .reduce(f64::max)
                });
            finding.title = text(item, "Title").as_deref().map(first_line);
            finding.uri = text(item, "PrimaryURL");
            report.findings.push(finding);
        }
    }
    Ok(report)
}

fn grype(value: &Value) -> Result<Report, String> {
    let mut report = Report {
        scanner: "grype".into(),
        ..Report::default()
    };
    // Matches Grype itself ignored (its own ignore rules) are in `ignoredMatches`: never read.
    for (n, item) in array(value, "matches", "")?.iter().enumerate() {
        let vuln = item
            .get("vulnerability")
            .ok_or_else(|| format!("matches[{n}] has no vulnerability"))?;
        let id = text(vuln, "id").ok_or_else(|| format!("matches[{n}].vulnerability has no id"))?;
        let mut finding = Finding::new(
            id,
            Severity::from_scanner(vuln.get("severity").and_then(Value::as_str).unwrap_or("")),
        );
        if let Some(artifact) = item.get("artifact") {
            finding.package = text(artifact, "name");
            finding.version = text(artifact, "version");
        }
        if let Some(fix) = vuln.get("fix") {
            let versions: Vec<&str> = array(fix, "versions", "fix.")?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if !versions.is_empty() {
                finding.fixed_in = Some(versions.join(", "));
            }
            finding.fix = match text(fix, "state").unwrap_or_default().as_str() {
                "fixed" => Fix::Available,
                "not-fixed" | "wont-fix" => Fix::NotAvailable,
                _ => Fix::Unknown,
            };
        }
        finding.score = array(vuln, "cvss", "vulnerability.")?
            .iter()
            .filter_map(|c| {
                c.get("metrics")
                    .and_then(|m| m.get("baseScore"))
                    .and_then(number)
            })
            .reduce(f64::max);
        if let Some(Value::Array(kev)) = vuln.get("knownExploited") {
            finding.exploit = Some(!kev.is_empty());
        }
        finding.title = text(vuln, "description").as_deref().map(first_line);
        finding.uri = text(vuln, "dataSource");
        report.findings.push(finding);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECR_BASIC: &str = r#"{
      "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
      "imageScanFindings": {
        "findingSeverityCounts": {"HIGH": 1, "LOW": 1},
        "findings": [
          {"name": "CVE-2024-1", "severity": "HIGH", "uri": "https://x/1",
           "attributes": [{"key": "package_name", "value": "openssl"},
                          {"key": "package_version", "value": "3.0.1"},
                          {"key": "CVSS3_SCORE", "value": "8.1"}]},
          {"name": "CVE-2024-2", "severity": "LOW"}
        ]
      }
    }"#;

    const ECR_ENHANCED: &str = r#"{
      "imageScanStatus": {"status": "ACTIVE", "description": "Continuous scan is selected."},
      "imageScanFindings": {"enhancedFindings": [
        {"severity": "CRITICAL", "status": "SUPPRESSED", "fixAvailable": "NO", "exploitAvailable": "YES",
         "score": 9.8, "title": "CVE-2024-3 - zlib",
         "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2024-3",
           "cvss": [{"baseScore": 9.1}],
           "vulnerablePackages": [{"name": "zlib", "version": "1.2", "fixedInVersion": "NotAvailable"}]}}
      ]}
    }"#;

    const TRIVY: &str = r#"{"SchemaVersion": 2, "ArtifactName": "app:1", "Results": [
      {"Target": "app:1 (debian 12)", "Vulnerabilities": [
        {"VulnerabilityID": "CVE-2024-4", "PkgName": "libc6", "InstalledVersion": "2.36",
         "FixedVersion": "2.36-9", "Status": "fixed", "Severity": "HIGH",
         "CVSS": {"nvd": {"V3Score": 7.0}, "redhat": {"V3Score": 7.5}}},
        {"VulnerabilityID": "CVE-2024-5", "PkgName": "bash", "Status": "will_not_fix", "Severity": "UNKNOWN"},
        {"VulnerabilityID": "CVE-2024-6", "PkgName": "tar", "Status": "not_affected", "Severity": "LOW"}
      ]},
      {"Target": "app.jar", "Class": "lang-pkgs"}
    ]}"#;

    const GRYPE: &str = r#"{"matches": [
      {"vulnerability": {"id": "GHSA-1", "severity": "Critical",
         "fix": {"state": "fixed", "versions": ["1.2.3"]},
         "cvss": [{"metrics": {"baseScore": 9.0}}], "knownExploited": [{"cve": "CVE-1"}]},
       "artifact": {"name": "lodash", "version": "1.0.0"}},
      {"vulnerability": {"id": "CVE-2024-7", "severity": "Negligible", "fix": {"state": "wont-fix", "versions": []}},
       "artifact": {"name": "coreutils", "version": "9.1"}}
    ], "ignoredMatches": [{"vulnerability": {"id": "CVE-IGNORED", "severity": "Critical"}}]}"#;

    #[test]
    fn reads_each_format() {
        let basic = parse(ECR_BASIC, Format::Auto).unwrap();
        assert_eq!(basic.scanner, "ecr-basic");
        assert_eq!(basic.status.as_deref(), Some("COMPLETE"));
        assert_eq!(basic.severity_counts.get("HIGH"), Some(&1));
        assert_eq!(basic.findings.len(), 2);
        assert_eq!(basic.findings[0].package.as_deref(), Some("openssl"));
        assert_eq!(basic.findings[0].score, Some(8.1));
        assert_eq!(basic.findings[1].fix, Fix::Unknown);

        let enhanced = parse(ECR_ENHANCED, Format::Ecr).unwrap();
        assert_eq!(enhanced.scanner, "ecr-enhanced");
        let f = &enhanced.findings[0];
        assert_eq!(
            (
                f.id.as_str(),
                f.severity,
                f.state,
                f.fix,
                f.exploit,
                f.score
            ),
            (
                "CVE-2024-3",
                Severity::Critical,
                State::Suppressed,
                Fix::NotAvailable,
                Some(true),
                Some(9.8)
            )
        );
        assert_eq!(f.fixed_in, None, "NotAvailable is no version");

        let trivy = parse(TRIVY, Format::Auto).unwrap();
        assert_eq!(trivy.scanner, "trivy");
        let got: Vec<(&str, Severity, Fix, State, Option<f64>)> = trivy
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.fix, f.state, f.score))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "CVE-2024-4",
                    Severity::High,
                    Fix::Available,
                    State::Active,
                    Some(7.5)
                ),
                (
                    "CVE-2024-5",
                    Severity::Undefined,
                    Fix::NotAvailable,
                    State::Active,
                    None
                ),
                (
                    "CVE-2024-6",
                    Severity::Low,
                    Fix::Unknown,
                    State::Closed,
                    None
                ),
            ]
        );

        let grype = parse(GRYPE, Format::Auto).unwrap();
        assert_eq!(grype.findings.len(), 2, "ignoredMatches are not read");
        assert_eq!(grype.findings[0].exploit, Some(true));
        assert_eq!(grype.findings[0].fixed_in.as_deref(), Some("1.2.3"));
        assert_eq!(grype.findings[1].severity, Severity::Informational);
        assert_eq!(grype.findings[1].fix, Fix::NotAvailable);
    }

    #[test]
    fn pages_one_after_another_are_merged() {
        let page1 = r#"{"imageScanStatus":{"status":"COMPLETE"},"imageScanFindings":{"findings":[{"name":"A","severity":"HIGH"}]},"nextToken":"t"}"#;
        let page2 = r#"{"imageScanStatus":{"status":"COMPLETE"},"imageScanFindings":{"findings":[{"name":"B","severity":"LOW"}]}}"#;
        let report = parse(&format!("{page1}\n{page2}"), Format::Auto).unwrap();
        let ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["A", "B"]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let table = [
            ("", "empty"),
            ("{", "not valid JSON"),
            ("[]", "expected a JSON object"),
            (r#"{"foo": 1}"#, "neither"),
            (
                r#"{"imageScanFindings": {"findings": {}}}"#,
                "findings is not an array",
            ),
            (
                r#"{"imageScanFindings": {"findings": [{"severity": "HIGH"}]}}"#,
                "has no name",
            ),
            (r#"{"matches": [{}]}"#, "has no vulnerability"),
            (
                r#"{"Results": [{"Vulnerabilities": [{}]}]}"#,
                "has no VulnerabilityID",
            ),
            (
                r#"{"matches": []} {"matches": []}"#,
                "several JSON documents",
            ),
        ];
        for (text, expected) in table {
            let err = parse(text, Format::Auto).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert!(parse(r#"{"matches": []}"#, Format::Trivy).is_err());
    }
}
