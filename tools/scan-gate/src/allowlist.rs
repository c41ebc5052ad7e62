//! The allowlist: findings a team has accepted, each with a reason and an expiry date.
//!
//! A JSON file, either an array of entries or `{"entries": [...]}`:
//!
//! ```json
//! {"entries": [
//!   {"id": "CVE-2024-1234", "reason": "not reachable: we never parse untrusted TLS", "expires": "2025-06-30"},
//!   {"id": "CVE-2024-9999", "reason": "fix due in base image 12.6", "expires": "2025-03-01",
//!    "package": "openssl", "repository": "team/api"}
//! ]}
//! ```
//!
//! An entry applies up to and including its `expires` day (UTC); after that it stops applying and
//! is reported. Unknown keys are refused, so a typo (`"expiry"`) cannot silently widen the list.
//! The current day is passed in, never read here, so expiry is tested against a fixed clock.

use chrono::NaiveDate;
use serde::Deserialize;

use crate::finding::Finding;

/// One accepted finding.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The vulnerability id (CVE-..., GHSA-...), compared without regard to case.
    pub id: String,
    /// Why it is accepted (required: a reviewer must be able to judge it).
    pub reason: String,
    /// The last day the entry applies, YYYY-MM-DD.
    pub expires: String,
    /// Only for this package.
    #[serde(default)]
    pub package: Option<String>,
    /// Only for this repository.
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(skip)]
    expiry: Option<NaiveDate>,
}

/// A checked allowlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// The entries, in file order.
    pub entries: Vec<Entry>,
}

/// Parses `YYYY-MM-DD`.
#[must_use]
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

impl Allowlist {
    /// Reads and checks an allowlist file's text. The error is a sentence without the file name.
    pub fn parse(text: &str) -> Result<Allowlist, String> {
        const SHAPE: &str =
            r#"expected [{"id", "reason", "expires": "YYYY-MM-DD"}, ...] or {"entries": [...]}"#;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("not a valid allowlist: not JSON ({e})"))?;
        let list = match value {
            serde_json::Value::Array(_) => value,
            serde_json::Value::Object(mut map) if map.len() == 1 && map.contains_key("entries") => {
                map.remove("entries").unwrap_or_default()
            }
            _ => return Err(format!("not a valid allowlist: {SHAPE}")),
        };
        let mut entries: Vec<Entry> = serde_json::from_value(list)
            .map_err(|e| format!("not a valid allowlist: {e} ({SHAPE})"))?;
        for (n, entry) in entries.iter_mut().enumerate() {
            let at = format!("entry {} ({})", n + 1, entry.id);
            if entry.id.trim().is_empty() {
                return Err(format!("entry {}: the id is empty", n + 1));
            }
            if entry.reason.trim().is_empty() {
                return Err(format!(
                    "{at}: the reason is empty (say why the finding is accepted)"
                ));
            }
            entry.expiry = Some(parse_date(&entry.expires).ok_or_else(|| {
                format!("{at}: expires '{}' is not a date YYYY-MM-DD", entry.expires)
            })?);
            for (name, value) in [
                ("package", &entry.package),
                ("repository", &entry.repository),
            ] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(format!("{at}: {name} is empty (leave it out to match any)"));
                }
            }
        }
        Ok(Allowlist { entries })
    }

    /// Whether entry `index` has expired on `today`.
    #[must_use]
    pub fn expired(&self, index: usize, today: NaiveDate) -> bool {
        self.entries[index].expiry.is_some_and(|day| today > day)
    }

    /// The entries that cover `finding` in `repository` (ignoring expiry), by index.
    pub fn covering<'a>(
        &'a self,
        finding: &'a Finding,
        repository: Option<&'a str>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, entry)| entry.covers(finding, repository))
            .map(|(index, _)| index)
    }
}

impl Entry {
    fn covers(&self, finding: &Finding, repository: Option<&str>) -> bool {
        if !self.id.trim().eq_ignore_ascii_case(&finding.id) {
            return false;
        }
        if let Some(package) = &self.package {
            let names = finding.package.as_deref().unwrap_or_default();
            if !names.split(", ").any(|name| name == package) {
                return false;
            }
        }
        if let Some(scope) = &self.repository
            && repository != Some(scope.as_str())
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Severity;

    fn day(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    #[test]
    fn dates() {
        let table = [
            ("2025-02-28", true),
            ("2025-02-29", false),
            ("2025-2-1", false),
            ("2025-02-01T00:00:00Z", false),
            ("tomorrow", false),
        ];
        for (text, ok) in table {
            assert_eq!(parse_date(text).is_some(), ok, "{text}");
        }
    }

    #[test]
    fn expiry_against_a_fixed_clock() {
        let list = Allowlist::parse(r#"[{"id": "CVE-1", "reason": "r", "expires": "2025-06-30"}]"#)
            .unwrap();
        let table = [
            ("2025-06-29", false),
            ("2025-06-30", false), // the expiry day itself still applies
            ("2025-07-01", true),
            ("2030-01-01", true),
        ];
        for (today, expired) in table {
            assert_eq!(list.expired(0, day(today)), expired, "{today}");
        }
    }

    #[test]
    fn scope_by_package_and_repository() {
        let list = Allowlist::parse(
            r#"{"entries": [
                {"id": "cve-1", "reason": "any", "expires": "2099-01-01"},
                {"id": "CVE-1", "reason": "pkg", "expires": "2099-01-01", "package": "zlib"},
                {"id": "CVE-1", "reason": "repo", "expires": "2099-01-01", "repository": "team/api"}
            ]}"#,
        )
        .unwrap();
        let mut finding = Finding::new("CVE-1", Severity::High);
        finding.package = Some("openssl, zlib".into());
        let table: [(Option<&str>, Option<&str>, &[usize]); 4] = [
            (Some("openssl, zlib"), Some("team/api"), &[0, 1, 2]),
            (Some("openssl"), Some("team/web"), &[0]),
            (None, None, &[0]),
            (Some("zlib"), None, &[0, 1]),
        ];
        for (package, repository, expected) in table {
            finding.package = package.map(ToOwned::to_owned);
            let got: Vec<usize> = list.covering(&finding, repository).collect();
            assert_eq!(got, expected, "{package:?} {repository:?}");
        }
        let other = Finding::new("CVE-2", Severity::High);
        assert_eq!(list.covering(&other, None).count(), 0);
    }

    #[test]
    fn bad_allowlists_are_refused() {
        let table = [
            ("{", "not a valid allowlist"),
            (
                r#"[{"id": "CVE-1", "reason": "r"}]"#,
                "not a valid allowlist",
            ),
            (
                r#"[{"id": "CVE-1", "reason": "r", "expiry": "2025-01-01"}]"#,
                "unknown field",
            ),
            (
                r#"[{"id": "CVE-1", "reason": " ", "expires": "2025-01-01"}]"#,
                "reason is empty",
            ),
            (
                r#"[{"id": "", "reason": "r", "expires": "2025-01-01"}]"#,
                "id is empty",
            ),
            (
                r#"[{"id": "CVE-1", "reason": "r", "expires": "01/02/2025"}]"#,
                "not a date",
            ),
            (
                r#"[{"id": "CVE-1", "reason": "r", "expires": "2025-01-01", "package": ""}]"#,
                "package is empty",
            ),
        ];
        for (text, expected) in table {
            let err = Allowlist::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
