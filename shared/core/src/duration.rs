//! Durations on the command line: `500ms`, `90s`, `15m`, `2h`, `1d` (a bare number is seconds).

use std::time::Duration;

/// The longest duration a flag takes: 100 years. Anything longer is a typo, and would
/// overflow the clock arithmetic of a deadline.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses a duration for a flag's value parser; more than [`MAX`] is refused.
pub fn parse(text: &str) -> Result<Duration, String> {
    let duration = parse_any(text)?;
    if duration > MAX {
        return Err(too_long(text.trim()));
    }
    Ok(duration)
}

/// Parses a whole number of seconds for a flag's value parser (`--deadline SECONDS`); more
/// than [`MAX`] is refused.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let seconds: u64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number of seconds"))?;
    if seconds > MAX.as_secs() {
        return Err(too_long(text));
    }
    Ok(seconds)
}

fn too_long(text: &str) -> String {
    format!("'{text}' is longer than the 100 years a duration may be")
}

fn parse_any(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("'{text}' is not a duration (e.g. 500ms, 90s, 15m, 2h, 1d)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(seconds))
}

/// A duration the way [`parse`] reads it, in the largest whole unit.
#[must_use]
pub fn show(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", duration.as_millis())
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn durations_longer_than_a_century_are_refused() {
        assert_eq!(super::parse("36500d").unwrap(), super::MAX);
        assert!(super::parse("36501d").unwrap_err().contains("100 years"));
        assert!(super::parse("18446744073709551615s").is_err());
        assert!(super::parse_seconds("9223372036854775807").is_err());
        assert_eq!(super::parse_seconds("300"), Ok(300));
    }

    use super::*;

    #[test]
    fn parses_and_shows_each_unit() {
        let cases = [
            ("500ms", Duration::from_millis(500), "500ms"),
            ("90s", Duration::from_secs(90), "90s"),
            ("45", Duration::from_secs(45), "45s"),
            ("15m", Duration::from_secs(900), "15m"),
            ("2h", Duration::from_secs(7200), "2h"),
            ("1d", Duration::from_secs(86_400), "1d"),
        ];
        for (text, duration, shown) in cases {
            assert_eq!(parse(text), Ok(duration), "{text}");
            assert_eq!(show(duration), shown, "{text}");
        }
        for bad in ["2w", "h", "", "-1s", "1.5h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
