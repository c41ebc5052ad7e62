//! Severities of findings, in one order shared by every reader and the policy.
//!
//! ECR's basic scans use CRITICAL..INFORMATIONAL and UNDEFINED; enhanced (Inspector) scans add
//! UNTRIAGED. UNDEFINED and UNTRIAGED rank below INFORMATIONAL: `--fail-on low` does not include
//! them, but naming them (`--fail-on untriaged`, `--budget undefined=0`) does.

use std::fmt;

/// A finding's severity. The derived order is the policy's: `Untriaged < ... < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Not yet triaged by the vendor (enhanced scans).
    Untriaged,
    /// No severity given (basic scans).
    Undefined,
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, most severe first (the order of reports).
    pub const ALL: [Severity; 7] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
        Severity::Untriaged,
    ];

    /// The name ECR uses (`CRITICAL`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
            Severity::Untriaged => "UNTRIAGED",
        }
    }

    /// Parses a severity name from the command line or a policy, in any case (`high`, `HIGH`).
    /// `info` and `informational` are the same.
    #[must_use]
    pub fn parse(text: &str) -> Option<Severity> {
        let upper = text.trim().to_ascii_uppercase();
        Some(match upper.as_str() {
            "CRITICAL" => Severity::Critical,
            "HIGH" => Severity::High,
            "MEDIUM" => Severity::Medium,
            "LOW" => Severity::Low,
            "INFORMATIONAL" | "INFO" => Severity::Informational,
            "UNDEFINED" => Severity::Undefined,
            "UNTRIAGED" => Severity::Untriaged,
            _ => return None,
        })
    }

    /// Reads a scanner's severity, where anything unknown is UNDEFINED (Trivy's `UNKNOWN`,
    /// Grype's `Negligible` and `Unknown`): a finding is never dropped for its severity's name.
    #[must_use]
    pub fn from_scanner(text: &str) -> Severity {
        match text.trim().to_ascii_uppercase().as_str() {
            "NEGLIGIBLE" => Severity::Informational,
            other => Severity::parse(other).unwrap_or(Severity::Undefined),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted names, for error messages.
pub const NAMES: &str = "critical, high, medium, low, informational, undefined, untriaged";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Informational > Severity::Undefined);
        assert!(Severity::Undefined > Severity::Untriaged);
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
            assert_eq!(
                Severity::parse(&severity.as_str().to_lowercase()),
                Some(severity)
            );
        }
        let table = [
            ("info", Some(Severity::Informational)),
            (" High ", Some(Severity::High)),
            ("severe", None),
            ("", None),
        ];
        for (text, expected) in table {
            assert_eq!(Severity::parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn scanner_names_never_drop_a_finding() {
        let table = [
            ("UNKNOWN", Severity::Undefined),
            ("Negligible", Severity::Informational),
            ("Critical", Severity::Critical),
            ("weird", Severity::Undefined),
        ];
        for (text, expected) in table {
            assert_eq!(Severity::from_scanner(text), expected, "{text}");
        }
    }
}
