//! img-build's default builder, the daemon's BuildKit, through img-build's own session: the
//! context as the classic docker CLI builds it, secrets that never reach the image or the logs,
//! SSH agents, and a pull request's hostile context.

use std::path::Path;

use serde_json::Value;

use crate::harness::{docker, tool, unique};
use crate::img_build::{Images, base, listing, write};

/// Builds `ctx` with the docker CLI's classic builder and with img-build's default; returns the
/// two images' listings and img-build's document.
fn both(
    ctx: &Path,
    dockerfile: Option<&Path>,
    images: &mut Images,
) -> [(String, String, String); 2] {
    let cli_image = unique("imgpipe-session-cli").to_lowercase();
    let our_image = unique("imgpipe-session-ours").to_lowercase();
    images.0.extend([cli_image.clone(), our_image.clone()]);
    let mut args = vec!["build", "-q", "-t", &cli_image];
    let file;
    if let Some(path) = dockerfile {
        file = path.to_str().unwrap().to_owned();
        args.extend(["-f", &file]);
    }
    args.push(ctx.to_str().unwrap());
    let (ok, text) = docker(&args);
    assert!(ok, "docker build: {text}");
    let mut run = tool("img-build").args(["--no-input", "--tag", &our_image]);
    if let Some(path) = dockerfile {
        run = run.args(["-f", path.to_str().unwrap()]);
    }
    let doc = run.args([ctx.to_str().unwrap()]).run().success().document();
    assert_eq!(
        doc["build"]["builder"], "buildkit",
        "the default builder: {doc}"
    );
    [listing(&cli_image), listing(&our_image)]
}

fn fixture(dir: &Path, ignore: &str) {
    write(&dir.join(".dockerignore"), ignore);
    write(&dir.join("src/app.txt"), "app\n");
    write(&dir.join("keep.txt"), "keep\n");
    write(&dir.join("docs/readme.md"), "docs\n");
}

#[test]
fn a_dockerignore_that_names_itself_and_the_dockerfile_keeps_both_out_as_docker_does() {
    // Every spelling docker accepts for the two names: plain, anchored, dotted, globbed, in any
    // directory, with a trailing slash, with CRLF line ends, and everything-but.
    let spellings = [
        "Dockerfile\n.dockerignore\n",
        "/Dockerfile\n/.dockerignore\n",
        "./Dockerfile\n./.dockerignore\n",
        "Docker*\n.docker*\n",
        "**/Dockerfile\n**/.dockerignore\n",
        "Dockerfile/\n.dockerignore/\n",
        "# CRLF\r\nDockerfile\r\n.dockerignore\r\n",
        "*\n!src\n!keep.txt\n!docs\n",
    ];
    let mut images = Images(Vec::new());
    for spelling in spellings {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), spelling);
        write(
            &dir.path().join("Dockerfile"),
            &format!("FROM {}\nCOPY . /ctx\n", base()),
        );
        let [
            (cli_files, cli_sums, cli_ignore),
            (our_files, our_sums, our_ignore),
        ] = both(dir.path(), None, &mut images);
        assert_eq!(
            our_files, cli_files,
            "{spelling:?}: the files, their modes and sizes"
        );
        assert_eq!(our_sums, cli_sums, "{spelling:?}: contents");
        assert_eq!(our_ignore, cli_ignore, "{spelling:?}: .dockerignore");
        for gone in ["./Dockerfile|", "./.dockerignore|"] {
            assert!(
                !cli_files.contains(gone),
                "{spelling:?}: docker sent {gone}"
            );
        }
        for kept in ["./src/app.txt|", "./keep.txt|", "./docs/readme.md|"] {
            assert!(
                cli_files.contains(kept),
                "{spelling:?}: {kept} missing: {cli_files}"
            );
        }
    }
}

#[test]
fn a_dockerfile_outside_the_context_leaves_no_trace_in_the_image() {
    let outer = tempfile::tempdir().unwrap();
    let ctx = outer.path().join("ctx");
    let dockerfile = outer.path().join("docker/Dockerfile.prod");
    write(&dockerfile, &format!("FROM {}\nCOPY . /ctx\n", base()));
    let mut images = Images(Vec::new());

    // The .dockerignore names itself: both images hold the same files, no Dockerfile, no
    // injected name.
    fixture(&ctx, ".dockerignore\nDockerfile.prod\n");
    let [cli, ours] = both(&ctx, Some(&dockerfile), &mut images);
    assert_eq!(ours.0, cli.0, "files, modes, sizes");
    assert_eq!(ours.1, cli.1, "contents");
    assert!(!ours.0.contains(".dockerfile."), "{}", ours.0);
    assert!(!ours.0.contains("./.dockerignore|"), "{}", ours.0);

    // A .dockerignore that keeps itself: BuildKit gets it as written. (The classic builder gets
    // one with the injected Dockerfile's name appended, and keeps that in the image.)
    write(&ctx.join(".dockerignore"), "docs\n");
    let [cli, ours] = both(&ctx, Some(&dockerfile), &mut images);
    let without_ignore = |files: &str| {
        files
            .lines()
            .filter(|l| !l.starts_with("./.dockerignore|"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_ignore(&ours.0), without_ignore(&cli.0));
    assert!(!ours.0.contains(".dockerfile."), "{}", ours.0);
    assert_eq!(ours.2.trim_end(), "docs", "the .dockerignore as written");
    assert!(cli.2.contains(".dockerfile.<20 hex>"), "{}", cli.2);
}

#[test]
fn the_content_hash_is_the_same_for_either_builder_and_img_tag() {
    let dir = tempfile::tempdir().unwrap();
    fixture(
        dir.path(),
        "Dockerfile\n.dockerignore\ndocs\n!docs/readme.md\n",
    );
    write(&dir.path().join("docs/drop.md"), "dropped\n");
    write(
        &dir.path().join("Dockerfile"),
        &format!("FROM {}\nCOPY . /ctx\n", base()),
    );
    let image = unique("imgpipe-session-hash").to_lowercase();
    let _images = Images(vec![image.clone()]);
    let hash_with = |builder: &str| -> Value {
        let doc = tool("img-build")
            .args(["--no-input", "--builder", builder, "--tag", &image])
            .args([dir.path().to_str().unwrap()])
            .run()
            .success()
            .document();
        doc["build"]["context"].clone()
    };
    let buildkit = hash_with("buildkit");
    let classic = hash_with("classic");
    assert_eq!(buildkit["hash"], classic["hash"], "{buildkit} {classic}");
    assert_eq!(
        buildkit["files"], 3,
        "src/app.txt, keep.txt, docs/readme.md: {buildkit}"
    );
    // The Dockerfile is part of what the build sees.
    write(
        &dir.path().join("Dockerfile"),
        &format!("FROM {}\nCOPY . /ctx/\n", base()),
    );
    assert_ne!(hash_with("buildkit")["hash"], buildkit["hash"]);
}

#[test]
fn a_rebuild_sends_only_the_file_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    // Thousands of files, 10 MB: the daemon asks for all of them at once on the first build and
    // the transfer lasts seconds, through the session's health checks; the listing of the
    // context goes through its temporary file several times over.
    let filler = "x".repeat(2000);
    for i in 0..5000 {
        write(
            &dir.path().join(format!("src/d{}/f{i:04}.txt", i / 500)),
            &format!("file {i}\n{filler}"),
        );
    }
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {}\nCOPY . /ctx\nRUN cat /ctx/src/d0/f0007.txt > /seen\n",
            base()
        ),
    );
    write(&dir.path().join(".dockerignore"), "**/*.tmp\n");
    write(&dir.path().join("src/scratch.tmp"), "not sent\n");
    let image = unique("imgpipe-session-rebuild").to_lowercase();
    let _images = Images(vec![image.clone()]);
    let build = || {
        tool("img-build")
            .args(["--no-input", "--tag", &image])
            .args([dir.path().to_str().unwrap()])
            .run()
            .success()
            .document()
    };
    let first = build();
    // A new directory is a new shared key: the daemon has nothing yet, and asks for all 5,002
    // files (the Dockerfile and .dockerignore are in the context too; .dockerignore, which the
    // daemon fetches alone first, counts once).
    assert_eq!(first["build"]["context"]["sent"]["files"], 5002, "{first}");
    assert_eq!(first["build"]["context"]["files"], 5002, "{first}");
    // The same size, a new content: found by its new time, not its size.
    write(
        &dir.path().join("src/d0/f0007.txt"),
        &format!("FILE 7\n{filler}"),
    );
    let second = build();
    let sent = &second["build"]["context"]["sent"];
    assert_eq!(sent["files"], 1, "only the changed file: {second}");
    assert_eq!(sent["bytes"], 2007, "{second}");
    assert!(
        sent["seconds"].as_f64().is_some_and(|s| s >= 0.0),
        "how long the transfer took: {second}"
    );
    let (ok, text) = docker(&["run", "--rm", &image, "cat", "/seen"]);
    assert!(ok, "{text}");
    assert_eq!(
        text.lines().next(),
        Some("FILE 7"),
        "the build saw the new content"
    );
}

/// Every byte of an image as `docker save` writes it: its config, history and layers.
fn saved(image: &str) -> Vec<u8> {
    let output = std::process::Command::new("docker")
        .args(["save", image])
        .envs(crate::harness::services())
        .output()
        .expect("docker save");
    assert!(output.status.success(), "docker save {image}");
    output.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_from_a_file_and_the_environment_reach_the_step_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let npmrc_value = format!("//registry.npmjs.org/:_authToken={}", unique("npm-secret"));
    let token_value = unique("env-secret-token");
    let npmrc = dir.path().join("outside/npmrc");
    write(&npmrc, &npmrc_value);
    let ctx = dir.path().join("ctx");
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {}\n\
             RUN --mount=type=secret,id=npmrc,target=/root/.npmrc sha256sum /root/.npmrc | cut -c1-64 > /npmrc.sum\n\
             RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /token.sum \
             && cat /run/secrets/token | wc -c > /token.len\n",
            base()
        ),
    );
    let image = unique("imgpipe-session-secret").to_lowercase();
    let _images = Images(vec![image.clone()]);
    // BuildKit's cache keys do not cover secret values: --no-cache, so the steps run now.
    let out = tool("img-build")
        .args(["--no-input", "-v", "--no-cache", "--tag", &image])
        .args(["--secret", &format!("id=npmrc,src={}", npmrc.display())])
        .args(["--secret", "id=token,env=IMGPIPE_TEST_TOKEN"])
        .env("IMGPIPE_TEST_TOKEN", &token_value)
        .args([ctx.to_str().unwrap()])
        .run();
    out.success().hides(&npmrc_value).hides(&token_value);

    // The steps saw the values.
    let sha = |text: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    let read = |path: &str| {
        let (ok, text) = docker(&["run", "--rm", &image, "cat", path]);
        assert!(ok, "{text}");
        text.lines().next().unwrap_or_default().trim().to_owned()
    };
    assert_eq!(read("/npmrc.sum"), sha(&npmrc_value));
    assert_eq!(read("/token.sum"), sha(&token_value));
    assert_eq!(read("/token.len"), token_value.len().to_string());
    // And nothing else holds them: the layers, the config, the history.
    let image_bytes = saved(&image);
    for value in [&npmrc_value, &token_value] {
        assert!(!contains(&image_bytes, value), "the image holds a secret");
    }
    let (ok, history) = docker(&["history", "--no-trunc", &image]);
    assert!(ok, "{history}");
    assert!(!history.contains(&token_value) && !history.contains(&npmrc_value));
    assert!(
        history.contains("sha256sum /run/secrets/token"),
        "{history}"
    );
}

#[test]
fn an_unknown_or_missing_secret_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {}\nRUN --mount=type=secret,id=absent,required cat /run/secrets/absent\n",
            base()
        ),
    );
    let ctx = dir.path().to_str().unwrap();
    // The step asks for an id nobody gave: BuildKit's error, on one line, as bad input.
    let out = tool("img-build")
        .args(["--no-input", "--secret", "id=other,env=HOME", ctx])
        .run();
    out.code(65);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("secret absent"), "{out:?}");
    assert!(last.contains("not found"), "{out:?}");

    // A source that is not there is a usage error before any build.
    let missing = dir.path().join("no-such-file");
    tool("img-build")
        .args(["--no-input", "--secret"])
        .args([format!("id=npmrc,src={}", missing.display())])
        .args([ctx])
        .run()
        .fails(2, &["--secret id=npmrc", "does not exist"]);
    tool("img-build")
        .args([
            "--no-input",
            "--secret",
            "id=token,env=IMGPIPE_UNSET_VARIABLE",
            ctx,
        ])
        .env_remove("IMGPIPE_UNSET_VARIABLE")
        .run()
        .fails(2, &["IMGPIPE_UNSET_VARIABLE", "not set"]);
    tool("img-build")
        .args(["--no-input", "--secret", "id=x,src=a,env=b", ctx])
        .run()
        .code(2);
    // Hostile sources are refused without reading them: an endless device, a FIFO.
    tool("img-build")
        .args(["--no-input", "--secret", "id=zero,src=/dev/zero", ctx])
        .kill_after(std::time::Duration::from_secs(20))
        .run()
        .fails(2, &["--secret id=zero", "/dev/zero"]);
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    tool("img-build")
        .args(["--no-input", "--secret"])
        .args([format!("id=pipe,src={}", fifo.display())])
        .args([ctx])
        .kill_after(std::time::Duration::from_secs(20))
        .run()
        .fails(2, &["--secret id=pipe"]);
    // The classic builder has no session to carry them.
    tool("img-build")
        .args([
            "--no-input",
            "--builder",
            "classic",
            "--secret",
            "id=h,env=HOME",
            ctx,
        ])
        .run()
        .fails(2, &["--secret", "BuildKit"]);
}

/// An ssh-agent of the test's own, stopped when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_ok(command: &mut std::process::Command) {
    let output = command.output().expect("running a helper");
    assert!(output.status.success(), "{command:?}: {output:?}");
}

/// A context whose image has OpenSSH's `ssh-add` (with the libraries it loads), so a step can
/// list the keys of the agent it is given.
fn ssh_add_context(ctx: &Path, dockerfile_tail: &str) {
    let ssh_add = Path::new("/usr/bin/ssh-add");
    let output = std::process::Command::new("ldd")
        .arg(ssh_add)
        .output()
        .expect("ldd");
    let mut files = vec![ssh_add.to_path_buf()];
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from)
        {
            files.push(path);
        }
    }
    for file in files {
        let dest = ctx.join("root").join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file, &dest).unwrap();
    }
    write(
        &ctx.join("Dockerfile"),
        &format!("FROM {}\nCOPY root/ /\n{dockerfile_tail}", base()),
    );
}

#[test]
fn a_step_lists_the_keys_of_the_forwarded_ssh_agent() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    run_ok(
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "imgpipe-test-key",
                "-f",
            ])
            .arg(&key),
    );
    let socket = dir.path().join("agent.sock");
    let _agent = Agent(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)"),
    );
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    run_ok(
        std::process::Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket),
    );
    let ctx = dir.path().join("ctx");
    ssh_add_context(&ctx, "RUN --mount=type=ssh ssh-add -l > /keys.txt\n");
    let image = unique("imgpipe-session-ssh").to_lowercase();
    let _images = Images(vec![image.clone()]);
    let keys = || {
        let (ok, text) = docker(&["run", "--rm", &image, "cat", "/keys.txt"]);
        assert!(ok, "{text}");
        text
    };

    // The agent of SSH_AUTH_SOCK, as `--ssh default`.
    tool("img-build")
        .args([
            "--no-input",
            "--no-cache",
            "--ssh",
            "default",
            "--tag",
            &image,
        ])
        .env("SSH_AUTH_SOCK", &socket)
        .args([ctx.to_str().unwrap()])
        .run()
        .success();
    let listed = keys();
    assert!(listed.contains("imgpipe-test-key (ED25519)"), "{listed}");

    // The key file itself, served from a private agent that img-build starts and stops.
    tool("img-build")
        .args(["--no-input", "--no-cache", "--tag", &image, "--ssh"])
        .args([format!("default={}", key.display())])
        .env_remove("SSH_AUTH_SOCK")
        .args([ctx.to_str().unwrap()])
        .run()
        .success();
    let listed = keys();
    assert!(listed.contains("imgpipe-test-key (ED25519)"), "{listed}");
    let private = std::fs::read_to_string(&key).unwrap();
    let secret_line = private.lines().nth(1).unwrap();
    assert!(
        !contains(&saved(&image), secret_line),
        "the key is in the image"
    );

    // No agent to forward: a usage error before the build.
    tool("img-build")
        .args(["--no-input", "--ssh", "default", ctx.to_str().unwrap()])
        .env_remove("SSH_AUTH_SOCK")
        .run()
        .fails(2, &["--ssh default", "SSH_AUTH_SOCK"]);
    // A step that wants an agent nobody forwarded: BuildKit's error, as bad input.
    let out = tool("img-build")
        .args(["--no-input", "--no-cache", ctx.to_str().unwrap()])
        .env("SSH_AUTH_SOCK", &socket)
        .run();
    out.code(65);
    assert!(
        out.stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("ssh"),
        "{out:?}"
    );
}

#[test]
fn a_hostile_context_sends_links_as_links_and_never_reads_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let outside_secret = unique("host-file-outside-the-context");
    let outside = dir.path().join("outside.txt");
    write(&outside, &outside_secret);
    let ctx = dir.path().join("ctx");
    write(&ctx.join("app.txt"), "app\n");
    std::os::unix::fs::symlink(&outside, ctx.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", ctx.join("relative-link")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(ctx.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    write(
        &ctx.join("new\nline and \u{1b}[2J escape.txt"),
        "odd name\n",
    );
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {}\nCOPY . /ctx\nRUN cat /ctx/absolute-link /ctx/relative-link > /read.txt 2>&1; ls -l /ctx > /ls.txt\n",
            base()
        ),
    );
    let image = unique("imgpipe-session-hostile").to_lowercase();
    let _images = Images(vec![image.clone()]);
    tool("img-build")
        .args([
            "--no-input",
            "--no-cache",
            "--tag",
            &image,
            ctx.to_str().unwrap(),
        ])
        .kill_after(std::time::Duration::from_secs(120))
        .run()
        .success()
        .hides(&outside_secret);
    assert!(
        !contains(&saved(&image), &outside_secret),
        "a file outside the context reached the image"
    );
    let (ok, listing) = docker(&["run", "--rm", &image, "cat", "/ls.txt"]);
    assert!(ok, "{listing}");
    assert!(
        listing.contains(&format!("absolute-link -> {}", outside.display())),
        "{listing}"
    );
    assert!(
        listing.contains("relative-link -> ../outside.txt"),
        "{listing}"
    );
    // The FIFO was sent as an entry and never opened (a read would have hung the build); the
    // daemon's copy leaves it out of the image.
    assert!(listing.contains("escape.txt"), "{listing}");

    // Copying a link by name resolves it inside the context, as docker does: the host's file is
    // never what arrives.
    write(
        &ctx.join("Dockerfile"),
        &format!("FROM {}\nCOPY absolute-link /leak\n", base()),
    );
    let out = tool("img-build")
        .args([
            "--no-input",
            "--no-cache",
            "--tag",
            &image,
            ctx.to_str().unwrap(),
        ])
        .kill_after(std::time::Duration::from_secs(120))
        .run();
    out.hides(&outside_secret);
    if out.code == Some(0) {
        assert!(!contains(&saved(&image), &outside_secret));
    } else {
        out.code(65);
    }
}

#[test]
fn a_base_image_in_ecr_is_pulled_with_credentials_the_session_serves() {
    use crate::harness::{Refs, build_small, service};
    let east = service("IMGPIPE_ECR_REGISTRY");
    let repository = unique("session-base");
    tool("ecr-repo")
        .args(["--no-input", "--repository", &repository])
        .run()
        .success();
    let base_ref = format!("{east}/{repository}:v1");
    let _refs = Refs(vec![base_ref.clone()]);
    let id = build_small(&base_ref, "a private base image");
    // Nothing stored for Docker: img-push and img-build get ECR tokens themselves.
    let config = tempfile::tempdir().unwrap();
    tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(
            serde_json::json!({"registry": east, "repository": repository, "tags": ["v1"], "image_id": id})
                .to_string(),
        )
        .run()
        .success();
    // Forget the local copy: BuildKit must pull it from the ECR host, with the token it asks
    // img-build for.
    let (ok, text) = docker(&["image", "rm", "-f", &base_ref]);
    assert!(ok, "{text}");
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!("FROM {base_ref}\nRUN cat /marker > /seen\n"),
    );
    let image = unique("imgpipe-session-pulled").to_lowercase();
    let _images = Images(vec![image.clone()]);
    let out = tool("img-build")
        .env("DOCKER_CONFIG", config.path())
        .args([
            "--no-input",
            "-v",
            "--tag",
            &image,
            dir.path().to_str().unwrap(),
        ])
        .run();
    out.success();
    assert!(
        out.stderr
            .contains(&format!("the build asked for credentials for {east}")),
        "{out:?}"
    );
    assert!(out.stderr.contains("GetAuthorizationToken"), "{out:?}");
    let (ok, seen) = docker(&["run", "--rm", &image, "cat", "/seen"]);
    assert!(ok, "{seen}");
    assert!(seen.starts_with("a private base image"), "{seen}");
    // The token itself never shows.
    let (ok, token) = crate::harness::aws_cli(&[
        "ecr",
        "get-authorization-token",
        "--query",
        "authorizationData[0].authorizationToken",
        "--output",
        "text",
    ]);
    assert!(ok, "{token}");
    out.hides(token.trim());
}
