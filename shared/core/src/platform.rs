//! Image platforms, `os/architecture[/variant]`: one home for how `--platform` is read, how an
//! image configuration or an index descriptor states a platform, when two name the same one,
//! the tag a multi-platform image's child is pushed under, and the ELF machine a platform's
//! programs are for (what binfmt_misc matches to run them under emulation).
//!
//! Names are normalised as containerd's `platforms.Normalize` does (moby and BuildKit use it):
//! `x86_64` is `amd64`, `aarch64` is `arm64`, and `arm64/v8` is plain `arm64`, so that what a
//! user types, what BuildKit writes and what a registry's index says compare equal.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Whether `part` may be a platform's os, architecture or variant: 1 to 32 letters, digits,
/// `.`, `_` or `-`. What a user types and what a registry or an image says are held to it.
fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 32
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// A platform: operating system, architecture, and the variant and OS version where stated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// `linux`, `windows`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// `v7`, `v8`, if stated.
    pub variant: Option<String>,
    /// The OS version (Windows images), if stated.
    pub os_version: Option<String>,
}

impl Platform {
    /// Reads `os/architecture[/variant]` as `--platform` takes it, normalised; anything else
    /// is a usage error that shows the form.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                crate::exit::USAGE,
                format!("platform '{}' {why}", crate::log::escape_controls(text)),
            )
            .with_hint(
                "write os/architecture[/variant], e.g. linux/amd64 or linux/arm64 or linux/arm/v7",
            )
        };
        let parts: Vec<&str> = text.trim().split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad("is not os/architecture[/variant]"));
        }
        if !parts.iter().all(|p| valid_part(p)) {
            return Err(bad(
                "has an empty or invalid part (letters, digits, '.', '_' and '-' only)",
            ));
        }
        let platform = Self {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            os_version: None,
        };
        Ok(platform.normalized())
    }

    /// Reads a comma-separated list, or several, as `--platform linux/amd64,linux/arm64`
    /// (buildx's form): each platform once, in the order first given.
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Self>> {
        let mut platforms: Vec<Self> = Vec::new();
        for value in values {
            for part in value.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
                let platform = Self::parse(part)?;
                if !platforms.contains(&platform) {
                    platforms.push(platform);
                }
            }
        }
        Ok(platforms)
    }

    /// The platform an image configuration states (`os`, `architecture`, `variant`,
    /// `os.version`), as written: it is the image's own record. `what` names the image for the
    /// error.
    pub fn from_config(config: &[u8], what: &str) -> Result<Self> {
        let value: Value = serde_json::from_slice(config).map_err(|e| {
            Error::data(format!(
                "the image configuration of {what} is not JSON ({e})"
            ))
        })?;
        Self::from_object(&value).ok_or_else(|| {
            Error::data(format!(
                "the image configuration of {what} states no valid os and architecture"
            ))
            .with_hint("build the image with a builder that records its platform")
        })
    }

    /// The platform of an index descriptor's `platform` object (or of a configuration); `None`
    /// when it states no os and architecture, or a part that is not a valid name (control
    /// characters, over 32 bytes): a registry's or an image's words reach logs and documents.
    #[must_use]
    pub fn from_object(value: &Value) -> Option<Self> {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let platform = Self {
            os: text("os")?,
            architecture: text("architecture")?,
            variant: text("variant"),
            os_version: text("os.version").filter(|v| v.len() <= 64 && valid_part(v)),
        };
        let variant_ok = platform.variant.as_deref().is_none_or(valid_part);
        (valid_part(&platform.os) && valid_part(&platform.architecture) && variant_ok)
            .then_some(platform)
    }

    /// containerd's normal form: `x86_64` is `amd64`, `aarch64` is `arm64` (`v8` implied),
    /// `armhf` is `arm/v7`, `arm` without a variant is `arm/v7`, `i386` is `386`.
    #[must_use]
    pub fn normalized(&self) -> Self {
        let mut p = self.clone();
        p.os = p.os.to_ascii_lowercase();
        if p.os == "macos" {
            "darwin".clone_into(&mut p.os);
        }
        let variant = p.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match (p.architecture.to_ascii_lowercase().as_str(), variant)
        {
            ("i386", v) => ("386".to_owned(), v),
            ("x86_64" | "x86-64" | "amd64", Some(v)) if v == "v1" => ("amd64".to_owned(), None),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_owned(), v),
            ("aarch64" | "arm64", Some(v)) if matches!(v.as_str(), "8" | "v8" | "v8.0") => {
                ("arm64".to_owned(), None)
            }
            ("aarch64" | "arm64", v) => ("arm64".to_owned(), v),
            ("armhf", _) | ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
            ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
            ("arm", Some(v)) if matches!(v.as_str(), "5" | "6" | "7" | "8") => {
                ("arm".to_owned(), Some(format!("v{v}")))
            }
            (a, v) => (a.to_owned(), v),
        };
        p.architecture = architecture;
        p.variant = variant;
        p
    }

    /// Whether two platforms are the same once normalised (the OS version aside).
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// `os/architecture[/variant]`.
    #[must_use]
    pub fn name(&self) -> String {
        let mut name = format!("{}/{}", self.os, self.architecture);
        if let Some(variant) = &self.variant {
            let _ = write!(name, "/{variant}");
        }
        name
    }

    /// The `platform` object of an index descriptor.
    #[must_use]
    pub fn descriptor(&self) -> Value {
        let mut platform = Map::new();
        platform.insert("architecture".into(), json!(self.architecture));
        platform.insert("os".into(), json!(self.os));
        if let Some(version) = &self.os_version {
            platform.insert("os.version".into(), json!(version));
        }
        if let Some(variant) = &self.variant {
            platform.insert("variant".into(), json!(variant));
        }
        Value::Object(platform)
    }

    /// What a child's tag adds to the image's tag: the architecture and variant
    /// (`amd64`, `arm64`, `armv7`), after the OS when it is not Linux (`windows-amd64`). The
    /// batch buildspec's `COMMIT-amd64` and `COMMIT-arm64` follow the same form.
    #[must_use]
    pub fn tag_suffix(&self) -> String {
        let p = self.normalized();
        let mut suffix = String::new();
        if p.os != "linux" {
            let _ = write!(suffix, "{}-", p.os);
        }
        suffix.push_str(&p.architecture);
        if let Some(variant) = &p.variant {
            suffix.push_str(variant);
        }
        suffix
    }

    /// The tag a multi-platform image's child for this platform is pushed and kept under:
    /// `TAG-SUFFIX` (`1.4.2-arm64`). An error when the result is not a valid tag.
    pub fn child_tag(&self, tag: &str) -> Result<String> {
        let child = format!("{tag}-{}", self.tag_suffix());
        crate::names::check_tag(&child).map_err(|e| {
            e.with_hint(
                "a multi-platform image's children are tagged TAG-ARCH: shorten the first tag",
            )
        })?;
        Ok(child)
    }

    /// The ELF machine of this platform's programs, as (class, byte order, `e_machine`):
    /// what a binfmt_misc entry's magic matches. `None` for an architecture imgpipe does not
    /// know to emulate.
    #[must_use]
    pub fn elf_machine(&self) -> Option<ElfMachine> {
        let p = self.normalized();
        let (class64, little, machine) = match p.architecture.as_str() {
            "amd64" => (true, true, 0x3e),
            "386" => (false, true, 0x03),
            "arm64" => (true, true, 0xb7),
            "arm" => (false, true, 0x28),
            "ppc64le" => (true, true, 0x15),
            "ppc64" => (true, false, 0x15),
            "s390x" => (true, false, 0x16),
            "riscv64" => (true, true, 0xf3),
            "mips64le" => (true, true, 0x08),
            "mips64" => (true, false, 0x08),
            "loong64" => (true, true, 0x102),
            _ => return None,
        };
        Some(ElfMachine {
            class64,
            little,
            machine,
        })
    }

    /// The platform this program was built for, which on Linux is the host's.
    #[must_use]
    pub fn this_host() -> Self {
        Self {
            os: std::env::consts::OS.to_owned(),
            architecture: std::env::consts::ARCH.to_owned(),
            variant: None,
            os_version: None,
        }
        .normalized()
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// An ELF machine: class, byte order and `e_machine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfMachine {
    /// ELFCLASS64 (else ELFCLASS32).
    pub class64: bool,
    /// Little-endian (else big-endian).
    pub little: bool,
    /// `e_machine`.
    pub machine: u16,
}

impl ElfMachine {
    /// Whether a binfmt_misc entry's `magic` and `mask` (hex, as `/proc/sys/fs/binfmt_misc/*`
    /// shows them, from offset 0) match an ELF executable of this machine.
    #[must_use]
    pub fn matches(&self, magic_hex: &str, mask_hex: Option<&str>) -> bool {
        let Some(magic) = hex::decode(magic_hex.trim()).ok() else {
            return false;
        };
        let mask = mask_hex
            .and_then(|m| hex::decode(m.trim()).ok())
            .unwrap_or_else(|| vec![0xff; magic.len()]);
        // The ELF header this machine's executables start with: magic, class, data, and
        // e_machine at bytes 18 and 19 (e_type 2 or 3 left to the mask).
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = if self.class64 { 2 } else { 1 };
        header[5] = if self.little { 1 } else { 2 };
        header[6] = 1;
        header[16] = if self.little { 2 } else { 0 };
        header[17] = if self.little { 0 } else { 2 };
        let machine = if self.little {
            self.machine.to_le_bytes()
        } else {
            self.machine.to_be_bytes()
        };
        header[18..20].copy_from_slice(&machine);
        magic.len() == 20
            && mask.len() == magic.len()
            && magic
                .iter()
                .zip(&mask)
                .zip(&header)
                .all(|((m, k), h)| m & k == h & k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_read_and_normalised_as_containerd_does() {
        let p = Platform::parse("linux/aarch64").unwrap();
        assert_eq!(p.name(), "linux/arm64");
        assert_eq!(
            Platform::parse("Linux/x86_64").unwrap().name(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().name(),
            "linux/arm64"
        );
        assert_eq!(Platform::parse("linux/arm").unwrap().name(), "linux/arm/v7");
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().name(),
            "linux/arm/v7"
        );
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux/am d64",
            "linux/\u{1b}[31m",
        ] {
            let err = Platform::parse(bad).unwrap_err();
            assert_eq!(err.code(), crate::exit::USAGE, "{bad}");
            assert!(!err.message().contains('\u{1b}'), "{}", err.message());
        }
        let list = Platform::parse_list(&["linux/amd64,linux/arm64", "linux/aarch64"]).unwrap();
        let names: Vec<String> = list.iter().map(Platform::name).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    }

    #[test]
    fn a_config_keeps_its_own_words_and_compares_normalised() {
        let p = Platform::from_config(
            br#"{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(p.name(), "linux/arm64/v8");
        assert!(p.same(&Platform::parse("linux/arm64").unwrap()));
        assert!(!p.same(&Platform::parse("linux/amd64").unwrap()));
        let w = Platform::from_config(
            br#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1"}"#,
            "x",
        )
        .unwrap();
        assert_eq!(
            w.descriptor(),
            json!({"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"})
        );
        assert!(Platform::from_config(br#"{"os":"linux"}"#, "x").is_err());
        let hostile =
            Platform::from_config(br#"{"os":"linux","architecture":"arm64\u001b[2J"}"#, "x");
        assert_eq!(hostile.unwrap_err().code(), crate::exit::DATA);
    }

    #[test]
    fn children_are_tagged_by_architecture() {
        let tag = |p: &str| Platform::parse(p).unwrap().child_tag("1.4.2").unwrap();
        assert_eq!(tag("linux/amd64"), "1.4.2-amd64");
        assert_eq!(tag("linux/arm64/v8"), "1.4.2-arm64");
        assert_eq!(tag("linux/arm/v7"), "1.4.2-armv7");
        assert_eq!(tag("windows/amd64"), "1.4.2-windows-amd64");
        let long = "x".repeat(125);
        assert!(
            Platform::parse("linux/arm64")
                .unwrap()
                .child_tag(&long)
                .is_err()
        );
    }

    #[test]
    fn binfmt_entries_are_matched_by_their_elf_machine() {
        // As Debian's qemu-user-static registers them.
        let aarch64 = "7f454c460201010000000000000000000200b700";
        let aarch64_mask = "ffffffffffffff00fffffffffffffffffeffffff";
        let arm = "7f454c4601010100000000000000000002002800";
        let arm_mask = "ffffffffffffff00fffffffffffffffffeffffff";
        let arm64 = Platform::parse("linux/arm64")
            .unwrap()
            .elf_machine()
            .unwrap();
        assert!(arm64.matches(aarch64, Some(aarch64_mask)));
        assert!(!arm64.matches(arm, Some(arm_mask)));
        let thumb = Platform::parse("linux/arm/v7")
            .unwrap()
            .elf_machine()
            .unwrap();
        assert!(thumb.matches(arm, Some(arm_mask)));
        assert!(!thumb.matches("zz", None));
        assert!(
            Platform::parse("linux/wasm")
                .unwrap()
                .elf_machine()
                .is_none()
        );
    }
}
