//! What a registry host, a repository, a tag, a digest and an image reference are: the one place
//! that decides, checked before anything reaches a service or a credential lookup.
//!
//! A registry name is where credentials are sent, so its grammar is strict: `host[:port]`, the
//! host a DNS name, an IPv4 literal or a bracketed IPv6 literal, as in the reference grammar of
//! distribution (`distribution/reference/regexp.go`). Anything else (`@`, `/`, `\`, `?`, `#`,
//! whitespace, control characters) is bad input ([`crate::exit::DATA`]): a URL parser would read
//! `ecr-host:443@other.host` as a request to `other.host`.

use crate::error::{Error, Result};

const HOST_RULE: &str = "a registry is host[:port]: a DNS name (letters, digits, '-' and '.'), \
     an IPv4 address or [IPv6], e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com or localhost:5000";

/// `text` with control characters (and anything else a terminal might act on) escaped, for
/// quoting untrusted input in a message.
#[must_use]
pub fn quote(text: &str) -> String {
    crate::log::escape_controls(text).into_owned()
}

/// Checks a registry host, `name[:port]`, and returns its name and port.
pub fn split_host(host: &str) -> Result<(&str, Option<u16>)> {
    let bad = |why: String| {
        Error::data(format!(
            "registry '{}' is not a valid host: {why}",
            quote(host)
        ))
        .with_hint(HOST_RULE)
    };
    if host.is_empty() {
        return Err(bad("it is empty".to_owned()));
    }
    if let Some(c) = host.chars().find(|c| {
        matches!(c, '@' | '/' | '\\' | '?' | '#' | '%') || c.is_whitespace() || c.is_control()
    }) {
        return Err(bad(format!("it has the character '{}'", c.escape_debug())));
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return Err(bad(
                "'[' opens an IPv6 address that ']' does not close".to_owned()
            ));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(format!("'{address}' is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("only ':PORT' may follow an IPv6 address".to_owned()))?,
            ),
        };
        (&host[..address.len() + 2], port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(bad(format!("'{port}' is not a port number (1-65535)"))),
        },
    };
    if !name.starts_with('[') {
        if name.len() > 253 {
            return Err(bad("the host name is longer than 253 characters".to_owned()));
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(bad(format!(
                    "'{label}' is not a DNS label (1-63 letters, digits or inner '-')"
                )));
            }
        }
    }
    Ok((name, port))
}

/// Checks a registry host (see [`split_host`]).
pub fn check_host(host: &str) -> Result<()> {
    split_host(host).map(|_| ())
}

/// Whether the first component of a name (`host/repo`) names a registry host rather than a
/// path component, as docker decides it: it has a `.` or a `:`, or is `localhost`.
#[must_use]
pub fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// The registry host of an address as docker writes it in config.json and gives it to
/// credential helpers (`https://host:5000/v1/`, `host:5000`), checked by [`check_host`]. A
/// scheme other than http(s), user information, a query or a fragment is refused.
pub fn host_of_address(address: &str) -> Result<&str> {
    let address = address.trim();
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let host = rest.split('/').next().unwrap_or(rest);
    check_host(host)?;
    Ok(host)
}

/// Checks a digest: `sha256:` and 64 lowercase hexadecimal digits, the only kind ECR and the
/// tools make and verify.
pub fn check_digest(digest: &str) -> Result<()> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::data(format!("'{}' is not a digest", quote(digest)))
            .with_hint("a digest is sha256: and 64 lowercase hex digits"))
    }
}

/// Whether `reference` (what follows `repository:` or `repository@`) is a digest rather than a
/// tag: tags have no `:`.
#[must_use]
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

/// Checks what may follow a repository in a registry URL: a tag ([`check_tag`]) or a digest
/// ([`check_digest`]).
pub fn check_tag_or_digest(reference: &str) -> Result<()> {
    if is_digest(reference) {
        check_digest(reference)
    } else {
        check_tag(reference)
    }
}

/// An image reference with its registry: `host[:port]/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (`127.0.0.1:5000`).
    pub registry: String,
    /// The repository (`team/my-app`).
    pub repository: String,
    /// The tag, if one is named.
    pub tag: Option<String>,
    /// The digest, if one is named.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and checks a reference. The registry is required: the tools never guess
    /// Docker Hub.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::data(format!("reference '{}' is not valid: {why}", quote(text))).with_hint(
                "give references as registry/repository:tag or registry/repository@sha256:..., \
                 e.g. 127.0.0.1:5000/my-app:1.0",
            )
        };
        // The host is everything before the first '/', checked before anything else: a '@'
        // in it is a smuggled host, not a digest.
        let Some((host, rest)) = text.split_once('/') else {
            return Err(bad("it names no registry"));
        };
        if !looks_like_host(host) {
            return Err(bad(
                "it names no registry host (the first part has no '.' or ':')",
            ));
        }
        check_host(host)?;
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (rest, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[slash..].rfind(':') {
            Some(colon) => (&rest[..slash + colon], Some(&rest[slash + colon + 1..])),
            None => (rest, None),
        };
        check_repository(repository)?;
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        if let Some(digest) = digest {
            check_digest(digest)?;
        }
        Ok(Self {
            registry: host.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// `registry/repository`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

const REPOSITORY_RULE: &str = "ECR repository names are 2-256 characters of lowercase letters and digits, \
     with single '.', '_' or '-' between them and '/' between path components (team/my-app)";

/// Checks an ECR repository name: 2-256 characters, lowercase path components separated by `/`,
/// each made of `[a-z0-9]+` runs joined by single `.`, `_` or `-`.
pub fn check_repository(name: &str) -> Result<()> {
    let bad = |why: String| {
        Error::data(format!(
            "repository name '{}' is not valid: {why}",
            quote(name)
        ))
        .with_hint(REPOSITORY_RULE)
    };
    let length = name.chars().count();
    if !(2..=256).contains(&length) {
        return Err(bad(format!("it has {length} characters")));
    }
    for (index, component) in name.split('/').enumerate() {
        if component.is_empty() {
            return Err(bad(if index == 0 {
                "it starts with '/'".to_owned()
            } else {
                "it has an empty path component ('//' or a trailing '/')".to_owned()
            }));
        }
        let mut previous_separator = true; // a component may not start with a separator
        for c in component.chars() {
            match c {
                'a'..='z' | '0'..='9' => previous_separator = false,
                '.' | '_' | '-' if !previous_separator => previous_separator = true,
                '.' | '_' | '-' => {
                    return Err(bad(format!(
                        "'{c}' must stand between letters or digits in '{component}'"
                    )));
                }
                'A'..='Z' => return Err(bad(format!("it has the uppercase letter '{c}'"))),
                other => return Err(bad(format!("it has the character {other:?}"))),
            }
        }
        if previous_separator {
            return Err(bad(format!("'{component}' ends with a separator")));
        }
    }
    Ok(())
}

/// What a content tag starts with: `ctx-` and then [`CONTENT_DIGITS`] hex digits of the
/// build context's hash, as img-tag's `content` rule gives it and `img-build
/// --skip-if-present` looks it up. One definition, or the skip silently never matches.
pub const CONTENT_PREFIX: &str = "ctx-";
/// How many hex digits of the context hash a content tag keeps.
pub const CONTENT_DIGITS: usize = 12;

/// The first [`CONTENT_DIGITS`] hex digits of a context hash (`sha256:<hex>` or `<hex>`): what
/// img-tag's `{content}` placeholder gives.
#[must_use]
pub fn content_short(hash: &str) -> &str {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    &hex[..hex.len().min(CONTENT_DIGITS)]
}

/// The content tag of a context hash: `ctx-4b0c6b0b16f6`.
#[must_use]
pub fn content_tag(hash: &str) -> String {
    format!("{CONTENT_PREFIX}{}", content_short(hash))
}

/// Whether `tag` is a content tag (see [`content_tag`]).
#[must_use]
pub fn is_content_tag(tag: &str) -> bool {
    tag.strip_prefix(CONTENT_PREFIX).is_some_and(|hex| {
        hex.len() == CONTENT_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Checks a Docker image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::data(format!("tag '{}' is not valid: {why}", quote(tag))).with_hint(
            "tags are 1-128 letters, digits, '_', '.' and '-', and do not start with '.' or '-'",
        )
    };
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err(bad("it is empty")),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        Some(_) => return Err(bad("it must start with a letter, digit or '_'")),
    }
    if tag.len() > 128 {
        return Err(bad("it is longer than 128 characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(bad(&format!("it has the character {c:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_tags_have_one_form() {
        let hex = "4b0c6b0b16f6c9e9600617f5acbb622ba3c0302d7e3e0c205d2e320e8f16253b";
        assert_eq!(
            super::content_tag(&format!("sha256:{hex}")),
            "ctx-4b0c6b0b16f6"
        );
        assert_eq!(super::content_tag(hex), "ctx-4b0c6b0b16f6");
        assert_eq!(super::content_short(hex), "4b0c6b0b16f6");
        assert!(super::is_content_tag("ctx-4b0c6b0b16f6"));
        assert!(!super::is_content_tag("ctx-4B0C6B0B16F6"));
        assert!(!super::is_content_tag("ctx-4b0c6b0b16f"));
        assert!(!super::is_content_tag("ctx-cache"));
    }

    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["my-app", "ab", "team/my-app", "a.b_c-d/e2/f", "0x"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("a", "it has 1 characters"),
            ("My-app", "uppercase letter 'M'"),
            ("my--app", "'-' must stand between"),
            ("-app", "'-' must stand between"),
            ("app-", "ends with a separator"),
            ("/app", "starts with '/'"),
            ("team//app", "empty path component"),
            ("team/", "empty path component"),
            ("my app", "the character ' '"),
        ];
        for (name, why) in cases {
            let err = check_repository(name).unwrap_err();
            assert!(err.message().contains(why), "{name}: {}", err.message());
            assert_eq!(err.code(), crate::exit::DATA);
        }
        assert!(check_repository(&"a".repeat(256)).is_ok());
        assert!(check_repository(&"a".repeat(257)).is_err());
    }

    #[test]
    fn registry_hosts() {
        let cases = [
            ("localhost", ("localhost", None)),
            ("localhost:5000", ("localhost", Some(5000))),
            ("127.0.0.1:5000", ("127.0.0.1", Some(5000))),
            ("[::1]:5000", ("[::1]", Some(5000))),
            ("[fe80::1]", ("[fe80::1]", None)),
            ("r.example", ("r.example", None)),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
                ("123456789012.dkr.ecr.us-east-1.amazonaws.com", Some(443)),
            ),
        ];
        for (host, parts) in cases {
            assert_eq!(split_host(host).unwrap(), parts, "{host}");
        }
        let bad = [
            ("", "it is empty"),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host",
                "the character '@'",
            ),
            ("r.example/x", "the character '/'"),
            ("r.example\\x", "the character '\\\\'"),
            ("r.example?x", "the character '?'"),
            ("r.example#x", "the character '#'"),
            ("r.example x", "the character ' '"),
            ("r.example\nx", "the character '\\n'"),
            ("r.example:x", "'x' is not a port"),
            ("r.example:0", "'0' is not a port"),
            ("r.example:65536", "'65536' is not a port"),
            ("r.example:+80", "'+80' is not a port"),
            ("r..example", "'' is not a DNS label"),
            ("-r.example", "'-r' is not a DNS label"),
            ("r_x.example", "'r_x' is not a DNS label"),
            ("[::1", "does not close"),
            ("[nope]:1", "not an IPv6 address"),
            ("[::1]x", "only ':PORT'"),
        ];
        for (host, why) in bad {
            let err = split_host(host).unwrap_err();
            assert_eq!(err.code(), crate::exit::DATA, "{host}");
            assert!(err.message().contains(why), "{host}: {}", err.message());
            assert!(!err.message().contains('\n'), "{host}: one line");
        }
    }

    #[test]
    fn addresses_as_docker_writes_them() {
        assert_eq!(
            host_of_address("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(
            host_of_address("http://127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(host_of_address(" ghcr.io ").unwrap(), "ghcr.io");
        for bad in [
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com@evil.example/",
            "https://user:pw@r.example/",
            "ftp://r.example",
            "r.example?x=1",
            "",
        ] {
            assert!(host_of_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_and_references() {
        let hex = "0123456789abcdef".repeat(4);
        let digest = format!("sha256:{hex}");
        assert!(check_digest(&digest).is_ok());
        for bad in [
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha512:{hex}"),
            format!("sha256:{hex}/../x"),
            hex.clone(),
        ] {
            assert_eq!(
                check_digest(&bad).unwrap_err().code(),
                crate::exit::DATA,
                "{bad}"
            );
        }
        assert!(check_tag_or_digest("v1").is_ok());
        assert!(check_tag_or_digest(&digest).is_ok());
        for bad in ["../other", "..", "v1/../../x", "sha256:x", "a b"] {
            assert!(check_tag_or_digest(bad).is_err(), "{bad}");
        }
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:1@{digest}")).unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            (
                "127.0.0.1:5000",
                "team/app",
                Some("1"),
                Some(digest.as_str())
            )
        );
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/app:1@{digest}"));
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!((r.tag, r.digest), (None, None));
        for bad in [
            "app:1",
            "team/app:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host/app:1",
            "r.example/../other:1",
            "r.example/app:../x",
            "r.example/app@sha256:abc",
            "r.example/App:1",
        ] {
            assert_eq!(
                Reference::parse(bad).unwrap_err().code(),
                crate::exit::DATA,
                "{bad}"
            );
        }
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "é", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
