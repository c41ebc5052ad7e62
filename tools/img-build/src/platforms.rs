//! `--platform`: which platforms the daemon can build, natively or under emulation, found out
//! before anything is built.
//!
//! The daemon runs a platform's `RUN` steps natively when it is its own (and an amd64 daemon
//! runs 386 programs too); any other needs the kernel's binfmt_misc to hand that platform's
//! programs to an emulator, QEMU, registered with the `F` flag so that it works inside a
//! container's root. That is what `docker run --privileged tonistiigi/binfmt --install arm64`
//! or Debian's qemu-user-static set up, and what BuildKit itself relies on. When the daemon
//! is on this machine (a unix socket), its kernel is this one, and its binfmt_misc entries are
//! read here; for a daemon elsewhere they cannot be, and its build says for itself.

use std::path::Path;

use docker::Engine;
use shared::error::chain;
use shared::platform::Platform;
use shared::{Error, Result, verbose, warn};

/// Where the kernel lists its binfmt_misc entries.
const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// One platform to build, and whether its steps run under emulation.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) platform: Platform,
    pub(crate) emulated: bool,
}

/// The daemon's own platform, as it reports it.
async fn daemon_platform(engine: &Engine) -> Result<Platform> {
    let version = engine.client.version().await.map_err(|e| {
        Error::unavailable(format!(
            "the Docker daemon at {} did not say its platform ({})",
            engine.host,
            chain(&e)
        ))
    })?;
    Ok(Platform {
        os: version.os.unwrap_or_default(),
        architecture: version.arch.unwrap_or_default(),
        variant: None,
        os_version: None,
    }
    .normalized())
}

/// Whether the daemon runs `platform`'s programs without emulation.
fn native(daemon: &Platform, platform: &Platform) -> bool {
    let p = platform.normalized();
    daemon.os == p.os
        && (daemon.architecture == p.architecture
            || (daemon.architecture == "amd64" && p.architecture == "386"))
}

/// Checks every platform before any build: each is native, or the kernel emulates it. A
/// platform neither can build is a configuration error (exit 78) that names both ways out.
pub(crate) async fn plan(engine: &Engine, platforms: &[Platform]) -> Result<Vec<Plan>> {
    if platforms.is_empty() {
        return Ok(Vec::new());
    }
    let daemon = daemon_platform(engine).await?;
    let local = engine.host.starts_with("unix://");
    let mut plans = Vec::new();
    for platform in platforms {
        if platform.normalized().os != daemon.os {
            return Err(Error::config(format!(
                "platform {platform} cannot be built by the Docker daemon at {}, which runs {}",
                engine.host, daemon.os
            ))
            .with_hint(format!(
                "build {} images on a {} host",
                platform.os, platform.os
            )));
        }
        let emulated = !native(&daemon, platform);
        if emulated {
            if local {
                if !check_emulation(Path::new(BINFMT), &daemon, platform)? {
                    warn!(
                        "cannot tell whether this host emulates {platform}: binfmt_misc is not mounted at {BINFMT} here; building (a RUN step fails with \"exec format error\" if it does not)"
                    );
                }
            } else {
                verbose!(
                    "{platform} is not the daemon's own platform ({daemon}); the daemon at {} is not on this machine, so whether it emulates {platform} is left to its build",
                    engine.host
                );
            }
        }
        plans.push(Plan {
            platform: platform.clone(),
            emulated,
        });
    }
    Ok(plans)
}

/// Checks that binfmt_misc (at `dir`) hands `platform`'s programs to an emulator that works
/// inside containers: `true` when it does, `false` when binfmt_misc is not mounted here (as in
/// a container that registered QEMU through another one's mount), an error when it is and no
/// entry emulates the platform.
pub(crate) fn check_emulation(dir: &Path, daemon: &Platform, platform: &Platform) -> Result<bool> {
    let refuse = |why: String| {
        Error::config(format!(
            "cannot build {platform} on this {daemon} host: {why}"
        ))
        .with_hint(
            "register QEMU with binfmt_misc (Debian: apt-get install qemu-user-static; or docker run --privileged --rm tonistiigi/binfmt --install all), or build it natively on a host of that platform (examples/buildspecs/multiarch.yml)",
        )
    };
    let Some(machine) = platform.elf_machine() else {
        return Err(refuse(format!(
            "imgpipe does not know which programs {} runs",
            platform.architecture
        )));
    };
    if !dir.join("status").exists() {
        return Ok(false);
    }
    let status = shared::files::read_text(&dir.join("status"), 64, "binfmt_misc's status")
        .unwrap_or_default();
    if status.trim() == "disabled" {
        return Err(refuse(format!(
            "binfmt_misc is turned off ({}/status says disabled)",
            dir.display()
        )));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| refuse(format!("{} cannot be read ({e})", dir.display())))?;
    let mut without_f = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "status" || name == "register" {
            continue;
        }
        // Entries are small kernel files; anything else here is not an entry.
        let Ok(text) = shared::files::read_text(&entry.path(), 4096, "a binfmt_misc entry") else {
            continue;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        let enabled = text.lines().next() == Some("enabled");
        let Some(magic) = field("magic ") else {
            continue;
        };
        if !enabled || field("offset ").is_some_and(|o| o != "0") {
            continue;
        }
        if !machine.matches(magic, field("mask ")) {
            continue;
        }
        if field("flags:").is_some_and(|f| f.contains('F')) {
            verbose!(
                "{platform} runs under emulation: binfmt_misc entry {}",
                name.to_string_lossy()
            );
            return Ok(true);
        }
        without_f = Some(name.to_string_lossy().into_owned());
    }
    Err(refuse(match without_f {
        Some(name) => format!(
            "binfmt_misc entry {name} emulates it, but without the F flag, so its emulator is not found inside a build's containers"
        ),
        None => format!(
            "no binfmt_misc entry runs {} programs",
            platform.architecture
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn an_emulator_is_found_by_its_elf_machine_and_needs_the_f_flag() {
        let dir = tempfile::tempdir().unwrap();
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        // Not mounted: nothing can be told.
        assert!(!check_emulation(dir.path(), &amd64, &arm64).unwrap());
        entry(dir.path(), "status", "enabled\n");
        let err = check_emulation(dir.path(), &amd64, &arm64).unwrap_err();
        assert_eq!(err.code(), shared::exit::CONFIG);
        assert!(
            err.message().contains("no binfmt_misc entry runs arm64"),
            "{}",
            err.message()
        );
        let aarch64 = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: P\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        entry(dir.path(), "qemu-aarch64", aarch64);
        let err = check_emulation(dir.path(), &amd64, &arm64).unwrap_err();
        assert!(
            err.message().contains("without the F flag"),
            "{}",
            err.message()
        );
        entry(
            dir.path(),
            "qemu-aarch64",
            &aarch64.replace("flags: P", "flags: PF"),
        );
        assert!(check_emulation(dir.path(), &amd64, &arm64).unwrap());
        entry(
            dir.path(),
            "qemu-aarch64",
            &aarch64
                .replace("enabled", "disabled")
                .replace("flags: P", "flags: PF"),
        );
        assert!(check_emulation(dir.path(), &amd64, &arm64).is_err());
        let riscv = Platform::parse("linux/riscv64").unwrap();
        assert!(check_emulation(dir.path(), &amd64, &riscv).is_err());
    }

    #[test]
    fn a_host_runs_its_own_platform_and_amd64_runs_386() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(native(&amd64, &Platform::parse("linux/x86_64").unwrap()));
        assert!(native(&amd64, &Platform::parse("linux/386").unwrap()));
        assert!(!native(&amd64, &Platform::parse("linux/arm64").unwrap()));
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(native(&arm64, &Platform::parse("linux/arm64/v8").unwrap()));
        assert!(!native(&arm64, &Platform::parse("linux/arm/v7").unwrap()));
    }
}
