//! Other platforms on this host: arm64 steps under QEMU, from the multi-platform base that
//! `scripts/services.sh` publishes (issue 20's first part: the test bed).

use crate::harness::{docker, service, tool, unique};
use crate::img_build::{Images, write};

/// Emulation must be there: a test that needs it fails with the reason, never skips.
fn emulation() {
    let state = service("IMGPIPE_ARM64_EMULATION");
    assert_eq!(
        state, "ready",
        "arm64 emulation is not available, so this test cannot run: {state}"
    );
}

/// Builds `FROM` the multi-platform base for `platform` with img-build's default builder; a
/// `RUN` step writes the machine it ran on. Returns what a container of the image reads back,
/// run through the docker CLI for that platform, and the image's recorded architecture.
fn build_for(platform: &str, image: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {} AS build\nRUN uname -m > /machine\nFROM {}\nCOPY --from=build /machine /machine\n",
            service("IMGPIPE_MULTI_BASE_IMAGE"),
            service("IMGPIPE_MULTI_BASE_IMAGE")
        ),
    );
    tool("img-build")
        .args(["--no-input", "--platform", platform, "--tag", image])
        .args([dir.path()])
        .run()
        .success();
    let (ok, machine) = docker(&[
        "run",
        "--rm",
        "--platform",
        platform,
        image,
        "cat",
        "/machine",
    ]);
    assert!(ok, "docker run --platform {platform}: {machine}");
    let (ok, arch) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}",
        image,
    ]);
    assert!(ok, "{arch}");
    // The first line is the file; the CLI may add a warning of its own after it.
    let machine = machine.lines().next().unwrap_or_default().to_owned();
    (machine, arch.trim().to_owned())
}

#[test]
fn an_arm64_step_runs_under_emulation_from_the_multi_platform_base() {
    emulation();
    let arm = unique("imgpipe-arm64").to_lowercase();
    let amd = unique("imgpipe-amd64").to_lowercase();
    let _images = Images(vec![arm.clone(), amd.clone()]);
    assert_eq!(
        build_for("linux/arm64", &arm),
        ("aarch64".to_owned(), "linux/arm64".to_owned())
    );
    // The same base and Dockerfile on the host's own platform: nothing emulated.
    assert_eq!(
        build_for("linux/amd64", &amd),
        ("x86_64".to_owned(), "linux/amd64".to_owned())
    );
}
