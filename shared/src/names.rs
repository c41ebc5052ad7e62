//! The grammar of ECR repository names and Docker tags, checked before anything reaches a service.

use crate::error::{Error, Result};

const REPOSITORY_RULE: &str = "ECR repository names are 2-256 characters of lowercase letters and digits, \
     with single '.', '_' or '-' between them and '/' between path components (team/my-app)";

/// Checks an ECR repository name: 2-256 characters, lowercase path components separated by `/`,
/// each made of `[a-z0-9]+` runs joined by single `.`, `_` or `-`.
pub fn check_repository(name: &str) -> Result<()> {
    let bad = |why: String| {
        Error::data(format!("repository name '{name}' is not valid: {why}"))
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

/// Checks a Docker image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::data(format!("tag '{tag}' is not valid: {why}")).with_hint(
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
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "é", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
