//! Values shown to people in messages: sizes and short digests, one way in every tool.

/// Bytes for people, in SI units as docker shows them: `999 B`, `1.5 kB`, `210.0 MB`.
#[must_use]
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The first 12 hex digits of a digest or image id (`sha256:<hex>`), as docker shows them.
#[must_use]
pub fn digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

/// A size limit for people, in the binary units it is set in: `4 MiB`, `64 KiB`, `10 B`.
#[must_use]
pub fn limit(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_digests_for_people() {
        for (n, text) in [
            (5, "5 B"),
            (999, "999 B"),
            (1500, "1.5 kB"),
            (210_000_000, "210.0 MB"),
            (2_000_000_000, "2.0 GB"),
        ] {
            assert_eq!(super::bytes(n), text);
        }
        assert_eq!(
            super::digest(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
        assert_eq!(super::digest("sha256:abc"), "abc");
    }
}
