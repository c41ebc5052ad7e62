//! Outputs are written in place, all or nothing: artifacts, reports and the Docker config
//! never replace a link, a FIFO or a device; a failed run leaves no half of its artifacts; a
//! killed ecr-login leaves no copy of the token behind. Issue 15's "Outputs" section.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Refs, build_small, service, tool, unique};

/// The tags the plain registry holds for `repository` (none when it has never heard of it).
fn registry_tags(repository: &str) -> Vec<String> {
    let url = format!(
        "http://{}/v2/{repository}/tags/list",
        service("IMGPIPE_REGISTRY")
    );
    let out = Command::new("curl").args(["-s", &url]).output().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    value["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A local image to push to `repository` on the plain registry, and the document naming it.
fn image(repository: &str) -> (Refs, String) {
    let reference = format!("{}/{repository}:1", service("IMGPIPE_REGISTRY"));
    let id = build_small(&reference, repository);
    let doc = json!({
        "registry": service("IMGPIPE_REGISTRY"),
        "repository": repository,
        "tags": ["1"],
        "image_id": id,
    });
    (Refs(vec![reference]), doc.to_string())
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn artifacts_follow_links_and_write_fifos_and_devices_in_place() {
    let repository = unique("out-place");
    let (_refs, doc) = image(&repository);
    let dir = tempfile::tempdir().unwrap();
    // A link: its target gets the content, the link stays.
    let real = dir.path().join("real-uri.txt");
    std::fs::write(&real, "old\n").unwrap();
    let link = dir.path().join("image_uri.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // A FIFO that a CI step reads.
    let fifo = dir.path().join("detail.fifo");
    mkfifo(&fifo);
    let (sender, received) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let _ = sender.send(std::fs::read_to_string(fifo).unwrap_or_default());
        });
    }
    let out = tool("img-push")
        .args(["--image-uri-file"])
        .args([&link])
        .args(["--image-detail"])
        .args([&fifo])
        .args(["--imagedefinitions", "/dev/stdout", "--container", "web"])
        .stdin(doc)
        .kill_after(Duration::from_secs(300))
        .run();
    out.code(0);
    let uri = format!("{}/{repository}:1", service("IMGPIPE_REGISTRY"));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), format!("{uri}\n"));
    // A tool that replaced the FIFO never wrote to it: the reader would wait for ever.
    let through_fifo = received
        .recv_timeout(Duration::from_secs(30))
        .expect("nothing arrived through the FIFO");
    assert!(through_fifo.contains("ImageURI"), "{out:?}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // /dev/stdout is the tool's stdout: the definitions arrive there, before the document.
    assert!(
        out.stdout.contains(&format!("\"imageUri\": \"{uri}\"")),
        "{out:?}"
    );
    assert!(
        std::fs::symlink_metadata("/dev/stdout")
            .unwrap()
            .file_type()
            .is_symlink(),
        "/dev/stdout was replaced"
    );
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

#[test]
fn artifact_paths_and_field_are_checked_before_the_push() {
    let repository = unique("out-check");
    let (_refs, doc) = image(&repository);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("image_uri.txt");
    let missing = dir.path().join("missing/imagedefinitions.json");
    tool("img-push")
        .args(["--image-uri-file"])
        .args([&uri])
        .args(["--imagedefinitions"])
        .args([&missing])
        .args(["--container", "web"])
        .stdin(doc.clone())
        .run()
        .fails(
            74,
            &["missing/imagedefinitions.json", "create the directory"],
        );
    assert!(!uri.exists(), "image_uri.txt was written");
    tool("img-push")
        .args(["--image-uri-file"])
        .args([dir.path()])
        .stdin(doc.clone())
        .run()
        .fails(74, &["is a directory"]);
    tool("img-push")
        .args(["--field", "imgae_uri"])
        .stdin(doc)
        .run()
        .fails(2, &["--field imgae_uri", "no field imgae_uri"]);
    assert_eq!(
        registry_tags(&repository),
        Vec::<String>::new(),
        "something was pushed"
    );
}

#[test]
fn a_failed_artifact_write_takes_back_the_others() {
    let repository = unique("out-undo");
    let (_refs, doc) = image(&repository);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("image_uri.txt");
    let definitions = dir.path().join("imagedefinitions.json");
    std::fs::write(&definitions, "[]\n").unwrap();
    // /dev/full takes the open and refuses the write: the last artifact fails.
    let out = tool("img-push")
        .args(["--image-uri-file"])
        .args([&uri])
        .args(["--imagedefinitions"])
        .args([&definitions])
        .args(["--container", "web", "--image-detail", "/dev/full"])
        .stdin(doc)
        .kill_after(Duration::from_secs(300))
        .run();
    out.code(74);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("writing /dev/full: no space left on device"),
        "{out:?}"
    );
    assert_eq!(out.stdout, "", "{out:?}");
    assert!(!uri.exists(), "image_uri.txt was left behind");
    assert_eq!(std::fs::read_to_string(&definitions).unwrap(), "[]\n");
}

#[test]
fn the_docker_config_behind_a_link_stays_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let config = dir.path().join("docker");
    std::fs::create_dir(&config).unwrap();
    std::os::unix::fs::symlink(store.join("config.json"), config.join("config.json")).unwrap();
    tool("ecr-login")
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();
    let link = std::fs::symlink_metadata(config.join("config.json")).unwrap();
    assert!(link.file_type().is_symlink(), "config.json was replaced");
    let written = std::fs::metadata(store.join("config.json")).unwrap();
    assert_eq!(written.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(store.join("config.json")).unwrap();
    assert!(
        text.contains("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
        "{text}"
    );
}

/// Every file under `dir` whose name marks it as a temporary file, or that holds `secret`
/// outside the files meant to hold it.
fn leftovers(dir: &Path, secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let holds =
                std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(secret));
            let extension = path.extension().map(|e| e.to_string_lossy().into_owned());
            let temporary = extension.as_deref() == Some("tmp");
            if temporary || (holds && extension.as_deref() != Some("json")) {
                found.push(format!("{} (holds the token: {holds})", path.display()));
            }
        }
    }
    found
}

#[test]
fn a_killed_ecr_login_leaves_no_copy_of_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("docker");
    let cache = dir.path().join("cache");
    let secret = service("IMGPIPE_AUTH_REGISTRY_PASSWORD");
    for round in 0..40u64 {
        let mut command = tool("ecr-login")
            .env("DOCKER_CONFIG", &config)
            .env("XDG_CACHE_HOME", &cache)
            .into_command();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the run: start-up, the token request, the write.
        std::thread::sleep(Duration::from_millis(5 + (round * 37) % 200));
        let _ = child.kill();
        let _ = child.wait();
    }
    // What a kill between the write and the rename leaves, in case no kill above hit it.
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join(".config.json.k1ll3d.tmp"), &secret).unwrap();
    tool("ecr-login")
        .env("DOCKER_CONFIG", &config)
        .env("XDG_CACHE_HOME", &cache)
        .run()
        .success();
    let left = leftovers(dir.path(), &secret);
    assert!(left.is_empty(), "left behind: {left:#?}");
    let text = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(text.contains("auths"), "{text}");
}
