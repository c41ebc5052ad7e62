//! ECR registries: what a registry host name says (account, region, partition, FIPS, dual-stack),
//! and registry credentials from ECR's GetAuthorizationToken.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::secret::Secret;

/// What an ECR registry host name tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrHost {
    /// The 12-digit account id.
    pub account: String,
    /// The region (`us-east-1`).
    pub region: String,
    /// Whether it is a FIPS endpoint (`dkr.ecr-fips`).
    pub fips: bool,
    /// Whether it is a dual-stack (IPv4 and IPv6) endpoint (`dkr-ecr.<region>.on.aws`).
    pub dual_stack: bool,
    /// The DNS suffix of the partition (`amazonaws.com`, `amazonaws.com.cn`, `on.aws`, ...).
    pub suffix: String,
}

/// The DNS suffixes of ECR registry endpoints, by partition.
const SUFFIXES: &[&str] = &[
    "amazonaws.com.cn",
    "amazonaws.com",
    "on.aws",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// Parses an ECR registry host (`123456789012.dkr.ecr.us-east-1.amazonaws.com`, with or without
/// a port); `None` for any other host, and for anything that is not a valid host at all
/// ([`crate::names::split_host`]): `<ecr-host>:443@other.host` is not ECR.
#[must_use]
pub fn parse_host(host: &str) -> Option<EcrHost> {
    let (name, _) = crate::names::split_host(host).ok()?;
    let name = name.to_ascii_lowercase();
    let suffix = SUFFIXES.iter().find(|s| name.ends_with(&format!(".{s}")))?;
    let head = &name[..name.len() - suffix.len() - 1];
    let labels: Vec<&str> = head.split('.').collect();
    // IPv4 endpoints: <account>.dkr.ecr[-fips].<region>.<suffix>;
    // dual-stack ones: <account>.dkr-ecr[-fips].<region>.on.aws.
    let (account, service, region, dual_stack) = match (labels.as_slice(), *suffix == "on.aws") {
        ([account, "dkr", service, region], false) => (*account, *service, *region, false),
        ([account, service, region], true) => (*account, *service, *region, true),
        _ => return None,
    };
    let fips = match (service, dual_stack) {
        ("ecr", false) | ("dkr-ecr", true) => false,
        ("ecr-fips", false) | ("dkr-ecr-fips", true) => true,
        _ => return None,
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !is_region_name(region) {
        return None;
    }
    Some(EcrHost {
        account: account.to_owned(),
        region: region.to_owned(),
        fips,
        dual_stack,
        suffix: (*suffix).to_owned(),
    })
}

/// Whether `region` looks like an AWS region name (`us-east-1`, `us-gov-west-1`, `cn-north-1`).
#[must_use]
pub fn is_region_name(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .parse::<u16>()
            .is_ok_and(|n| n > 0 && !parts[parts.len() - 1].starts_with('0'))
}

/// The expiry written inside an ECR registry password (base64 JSON with an `expiration` in
/// seconds since the epoch), if the password is one.
#[must_use]
pub fn password_expiry(password: &Secret) -> Option<DateTime<Utc>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(password.expose())
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let seconds = value.get("expiration")?.as_i64()?;
    DateTime::<Utc>::from_timestamp(seconds, 0)
}

/// Whether `tag` matches an ECR tag filter (a lifecycle rule's `tagPatternList` entry, a
/// tag-mutability exclusion): `*` stands for any run of characters (including none);
/// everything else matches itself.
#[must_use]
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == tag;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut remaining) = tag.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match remaining.find(part) {
            Some(pos) => remaining = &remaining[pos + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-5",
            "il-central-1",
        ] {
            assert!(super::is_region_name(ok), "{ok}");
        }
        for bad in [
            "useast1",
            "us-east",
            "US-EAST-1",
            "us-east-01",
            "us--1",
            "",
            "us-east-1a",
            "u-east-1",
        ] {
            assert!(!super::is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_any_run_of_characters() {
        for (pattern, tag, expected) in [
            ("prod*", "prod", true),
            ("prod*", "prod-1", true),
            ("prod*", "preprod", false),
            ("*prod", "preprod", true),
            ("*test*1*2*3", "my-test-1-2-3", true),
            ("*test*1*2*3", "my-test-1-2-3-4", false),
            ("v*.*.*", "v1.2.3", true),
            ("v*.*.*", "v1.2", false),
            ("latest", "latest", true),
            ("latest", "latest-1", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
            ("ab*", "a", false),
        ] {
            assert_eq!(
                super::tag_matches(pattern, tag),
                expected,
                "{pattern} ~ {tag}"
            );
        }
    }

    use super::*;

    #[test]
    fn parses_every_partition_and_endpoint_kind() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "us-east-1",
                false,
                false,
                "amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                true,
                false,
                "amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                false,
                false,
                "amazonaws.com.cn",
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                "eu-west-1",
                false,
                true,
                "on.aws",
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-2.on.aws",
                "us-east-2",
                true,
                true,
                "on.aws",
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "us-iso-east-1",
                false,
                false,
                "c2s.ic.gov",
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "us-isob-east-1",
                false,
                false,
                "sc2s.sgov.gov",
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "eu-isoe-west-1",
                false,
                false,
                "cloud.adc-e.uk",
            ),
            (
                "123456789012.DKR.ECR.us-east-1.amazonaws.com:443",
                "us-east-1",
                false,
                false,
                "amazonaws.com",
            ),
        ];
        for (host, region, fips, dual, suffix) in cases {
            let parsed = parse_host(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(parsed.account, "123456789012", "{host}");
            assert_eq!(parsed.region, region, "{host}");
            assert_eq!((parsed.fips, parsed.dual_stack), (fips, dual), "{host}");
            assert_eq!(parsed.suffix, suffix, "{host}");
        }
    }

    #[test]
    fn other_hosts_are_not_ecr() {
        for host in [
            "127.0.0.1:5000",
            "docker.io",
            "public.ecr.aws",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.useast1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com@other.host",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/x",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:x",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com\\evil",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com ",
        ] {
            assert_eq!(parse_host(host), None, "{host}");
        }
    }

    #[test]
    fn reads_the_expiry_inside_an_ecr_password() {
        let password = base64::engine::general_purpose::STANDARD
            .encode(r#"{"payload":"x","datakey":"y","version":"2","type":"DATA_KEY","expiration":1700000000}"#);
        let expiry = password_expiry(&Secret::new(password)).unwrap();
        assert_eq!(expiry.timestamp(), 1_700_000_000);
        assert_eq!(
            password_expiry(&Secret::new("123456789012-auth-token")),
            None
        );
    }
}
