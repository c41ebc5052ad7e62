//! One finding, whatever scanner reported it: the facts the policy needs, normalised.

use serde_json::{Value, json};

use crate::severity::Severity;

/// Whether a fix exists for a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// A fixed version exists.
    Available,
    /// A fix exists for some of the affected packages (ECR's `PARTIAL`).
    Partial,
    /// No fix exists (yet, or ever).
    NotAvailable,
    /// The scanner does not say (basic ECR scans).
    Unknown,
}

impl Fix {
    /// Reads ECR's `fixAvailable` (`YES`, `NO`, `PARTIAL`).
    #[must_use]
    pub fn from_ecr(text: Option<&str>) -> Fix {
        match text.map(str::to_ascii_uppercase).as_deref() {
            Some("YES") => Fix::Available,
            Some("NO") => Fix::NotAvailable,
            Some("PARTIAL") => Fix::Partial,
            _ => Fix::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Fix::Available => "yes",
            Fix::Partial => "partial",
            Fix::NotAvailable => "no",
            Fix::Unknown => "unknown",
        }
    }
}

/// Whether a finding is open. Suppressed and closed findings never count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Open (ECR's `ACTIVE`, and every basic finding).
    Active,
    /// Suppressed by a rule in Inspector.
    Suppressed,
    /// Closed (fixed, or the package is gone), or marked not affected by the vendor.
    Closed,
}

impl State {
    /// Reads ECR's enhanced `status` (`ACTIVE`, `SUPPRESSED`, `CLOSED`); anything else is
    /// treated as open, so that a finding is never dropped for a status name we do not know.
    #[must_use]
    pub fn from_ecr(text: Option<&str>) -> State {
        match text.map(str::to_ascii_uppercase).as_deref() {
            Some("SUPPRESSED") => State::Suppressed,
            Some("CLOSED") => State::Closed,
            _ => State::Active,
        }
    }
}

/// A finding as the policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The vulnerability id (CVE-..., GHSA-..., ALAS-...).
    pub id: String,
    /// Severity.
    pub severity: Severity,
    /// Affected package name(s), comma-separated when a finding names several.
    pub package: Option<String>,
    /// Installed version of the package.
    pub version: Option<String>,
    /// Version that fixes it, if known.
    pub fixed_in: Option<String>,
    /// Whether a fix exists.
    pub fix: Fix,
    /// Score (Inspector score, else CVSS base score), if known.
    pub score: Option<f64>,
    /// Whether an exploit is known, if the scanner says.
    pub exploit: Option<bool>,
    /// Open, suppressed or closed.
    pub state: State,
    /// A one-line title or description.
    pub title: Option<String>,
    /// Where to read more.
    pub uri: Option<String>,
}

impl Finding {
    /// A finding with only an id and a severity (the rest unknown, the state open).
    #[must_use]
    pub fn new(id: impl Into<String>, severity: Severity) -> Self {
        Self {
            id: id.into(),
            severity,
            package: None,
            version: None,
            fixed_in: None,
            fix: Fix::Unknown,
            score: None,
            exploit: None,
            state: State::Active,
            title: None,
            uri: None,
        }
    }

    /// The finding in the output document.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "id": self.id, "severity": self.severity.as_str() });
        let Value::Object(map) = &mut value else {
            return value;
        };
        let mut put = |name: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(name.to_owned(), v);
            }
        };
        put("package", self.package.clone().map(Value::from));
        put("version", self.version.clone().map(Value::from));
        put("fixed_in", self.fixed_in.clone().map(Value::from));
        if self.fix != Fix::Unknown {
            put("fix_available", Some(self.fix.as_str().into()));
        }
        put("score", self.score.map(Value::from));
        put("exploit_available", self.exploit.map(Value::from));
        put("title", self.title.clone().map(Value::from));
        put("uri", self.uri.clone().map(Value::from));
        value
    }

    /// `CVE-1 (openssl 1.0)`: how a person reads a finding in a line of text.
    #[must_use]
    pub fn label(&self) -> String {
        match (&self.package, &self.version) {
            (Some(p), Some(v)) => format!("{} ({p} {v})", self.id),
            (Some(p), None) => format!("{} ({p})", self.id),
            _ => self.id.clone(),
        }
    }
}
