//! Runs the real tool binaries against the real local services, and says everything about a
//! failure: the command, its exit code, stdout and stderr.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The environment of the local services, from `scripts/services.sh up` (idempotent: it starts
/// only what is not running). Panics, failing the test loudly, when a service cannot start.
pub fn services() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let script = root().join("scripts/services.sh");
        let output = Command::new("bash")
            .arg("-c")
            .arg(r#"set -e; eval "$("$0" up)"; env -0"#)
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/services.sh");
        assert!(
            output.status.success(),
            "scripts/services.sh up failed ({}): the tests need the local services",
            output.status
        );
        let mut env = BTreeMap::new();
        for entry in output.stdout.split(|b| *b == 0) {
            let entry = String::from_utf8_lossy(entry);
            if let Some((name, value)) = entry.split_once('=') {
                let wanted = name.starts_with("IMGPIPE_")
                    || name.starts_with("AWS_")
                    || name == "DOCKER_HOST";
                if wanted {
                    env.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        for needed in [
            "DOCKER_HOST",
            "AWS_ENDPOINT_URL_ECR",
            "IMGPIPE_REGISTRY",
            "IMGPIPE_AUTH_REGISTRY",
            "IMGPIPE_ECR_REGISTRY",
        ] {
            assert!(
                env.contains_key(needed),
                "scripts/services.sh env did not set {needed}"
            );
        }
        // The ECR host names resolve only in the services' private namespace.
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        assert!(
            hosts.contains(&env["IMGPIPE_ECR_REGISTRY"]),
            "the tests talk to ECR's host names, which resolve only in the services' namespace: run them as scripts/services.sh run -- cargo test (scripts/test.sh does)"
        );
        env
    })
}

/// One service variable.
pub fn service(name: &str) -> String {
    services()
        .get(name)
        .unwrap_or_else(|| panic!("scripts/services.sh env did not set {name}"))
        .clone()
}

/// The directory the tools are run from, laid out as a release installs them: the `imgpipe`
/// binary and a link to it for every name `imgpipe --list` gives, never copies. Built once per
/// test run, in target/<profile>/imgpipe-links.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--quiet"])
            .current_dir(root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the tools failed");
        // This test binary lives in target/<profile>/deps; the binaries in target/<profile>.
        let exe = std::env::current_exe().expect("test binary path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory")
            .to_owned();
        let imgpipe = profile.join("imgpipe");
        let listed = Command::new(&imgpipe)
            .arg("--list")
            .output()
            .expect("running imgpipe --list");
        assert!(listed.status.success(), "imgpipe --list: {listed:?}");
        // Made afresh beside the old, then renamed over it.
        let links = profile.join("imgpipe-links");
        let fresh = profile.join(format!("imgpipe-links.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh).unwrap();
        std::os::unix::fs::symlink(&imgpipe, fresh.join("imgpipe")).unwrap();
        for name in String::from_utf8(listed.stdout).unwrap().lines() {
            std::os::unix::fs::symlink(&imgpipe, fresh.join(name)).unwrap();
        }
        let old = profile.join(format!("imgpipe-links.old.{}", std::process::id()));
        let _ = std::fs::rename(&links, &old);
        std::fs::rename(&fresh, &links).expect("putting the links in place");
        let _ = std::fs::remove_dir_all(&old);
        links
    })
}

/// A tool run being prepared.
pub struct Run {
    command: Command,
    display: String,
    stdin: Option<Vec<u8>>,
    limit: Option<std::time::Duration>,
}

/// Every tool, by the name of its binary.
pub const TOOLS: [&str; 8] = [
    "ecr-login",
    "ecr-repo",
    "img-tag",
    "img-build",
    "img-push",
    "scan-gate",
    "lifecycle-set",
    "img-manifest",
];

/// A well-formed digest that no registry holds.
pub fn any_digest() -> String {
    format!("sha256:{}", "a".repeat(64))
}

/// Prepares a run of `tool` in a clean environment: PATH, a fresh HOME, the local services'
/// variables, and instance metadata turned off (the tests never leave this machine).
pub fn tool(name: &str) -> Run {
    program(&bin_dir().join(name))
}

/// Prepares a run of the program at `path` (a link to a tool, a script) the way [`tool`] does.
pub fn program(path: &Path) -> Run {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut command = Command::new(path);
    command.env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("HOME", scratch_home());
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    command.envs(services());
    Run {
        command,
        display: name,
        stdin: None,
        limit: None,
    }
}

/// A HOME for tool runs that holds nothing (no ~/.aws, no ~/.docker).
fn scratch_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

impl Run {
    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            self.display.push(' ');
            self.display.push_str(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.command.env_remove(name);
        self
    }

    /// Feeds `input` on stdin (otherwise stdin is empty).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Kills the tool, failing the test, if it has not finished after `limit`: for tests of a
    /// peer that hangs, where "it never returns" is the defect.
    pub fn kill_after(mut self, limit: std::time::Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The underlying command, for tests that manage the process themselves.
    pub fn into_command(self) -> Command {
        self.command
    }

    /// Runs the tool to completion.
    pub fn run(mut self) -> Outcome {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("starting the tool");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = self.stdin.unwrap_or_default();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = match self.limit {
            None => child.wait_with_output().expect("waiting for the tool"),
            Some(limit) => {
                let started = std::time::Instant::now();
                let mut pipes = (child.stdout.take(), child.stderr.take());
                let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
                    std::thread::spawn(move || {
                        let mut bytes = Vec::new();
                        if let Some(mut pipe) = pipe {
                            let _ = pipe.read_to_end(&mut bytes);
                        }
                        bytes
                    })
                };
                let stdout = read(pipes.0.take().map(|p| Box::new(p) as _));
                let stderr = read(pipes.1.take().map(|p| Box::new(p) as _));
                let status = loop {
                    if let Some(status) = child.try_wait().expect("waiting for the tool") {
                        break status;
                    }
                    if started.elapsed() > limit {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "{} did not finish within {} s: it was killed",
                            self.display,
                            limit.as_secs()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                };
                std::process::Output {
                    status,
                    stdout: stdout.join().expect("stdout reader"),
                    stderr: stderr.join().expect("stderr reader"),
                }
            }
        };
        writer.join().expect("stdin writer");
        Outcome {
            display: self.display,
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// Runs tools as a shell pipeline, `a | b | c`: each one's stdout is the next one's stdin
/// through a real pipe, and all run at once, so a tool that waits for its whole input before
/// writing shows. The first reads the stdin prepared for it; only the last one's stdout is
/// kept.
pub fn pipe(runs: impl IntoIterator<Item = Run>) -> Piped {
    let mut children = Vec::new();
    let mut displays = Vec::new();
    let mut first_input = None;
    let mut previous: Option<std::process::ChildStdout> = None;
    let mut stderr_readers = Vec::new();
    for (i, mut run) in runs.into_iter().enumerate() {
        let stdin = if let Some(out) = previous.take() {
            Stdio::from(out)
        } else {
            first_input = Some(run.stdin.take().unwrap_or_default());
            Stdio::piped()
        };
        assert!(
            i == 0 || run.stdin.is_none(),
            "only the first tool of a pipe reads prepared stdin"
        );
        run.command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = run.command.spawn().expect("starting a tool of the pipe");
        previous = child.stdout.take();
        let mut stderr = child.stderr.take().expect("stderr");
        stderr_readers.push(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        }));
        displays.push(run.display);
        children.push(child);
    }
    assert!(!children.is_empty(), "a pipe of no tools");
    let mut stdin = children[0].stdin.take().expect("stdin");
    let input = first_input.unwrap_or_default();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut last_stdout = previous.expect("the last tool's stdout");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut last_stdout, &mut stdout).expect("stdout is UTF-8");
    writer.join().expect("stdin writer");
    let mut stages = children
        .into_iter()
        .zip(stderr_readers)
        .zip(displays)
        .map(|((mut child, stderr), display)| {
            let status = child.wait().expect("waiting for a tool of the pipe");
            Outcome {
                display,
                code: status.code(),
                stdout: String::new(),
                stderr: stderr.join().expect("stderr reader"),
            }
        })
        .collect::<Vec<_>>();
    let last = stages.len() - 1;
    stages[last].stdout = stdout;
    Piped { stages }
}

/// Runs the tool in a pseudo-terminal, as a person at a terminal would (util-linux `script`):
/// stdout and stderr are the terminal, 120 columns wide, and both land in the outcome's
/// `stdout` as the terminal received them (escape sequences and `\r\n` included). Stdin is
/// `input` through a file when given, else the terminal.
pub fn in_terminal(run: Run, input: Option<&[u8]>) -> Outcome {
    let display = format!("(in a terminal) {}", run.display);
    let command = run.command;
    let quote =
        |text: &std::ffi::OsStr| format!("'{}'", text.to_string_lossy().replace('\'', "'\\''"));
    let mut line = String::from("stty cols 120 rows 50; exec ");
    line.push_str(&quote(command.get_program()));
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let input_file = input.map(|bytes| {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("writing the input");
        file
    });
    if let Some(file) = &input_file {
        line.push_str(" < ");
        line.push_str(&quote(file.path().as_os_str()));
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    script.env_clear();
    // A terminal names itself; the run's own TERM, if it sets one, wins.
    script.env("TERM", "xterm-256color");
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            script.env(name, value);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        script.current_dir(dir);
    }
    let output = script
        .stdin(Stdio::null())
        .output()
        .expect("running util-linux script (a pseudo-terminal)");
    Outcome {
        display,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A finished pipeline: one outcome per tool, in order. Only the last has stdout.
pub struct Piped {
    /// Each tool's outcome.
    pub stages: Vec<Outcome>,
}

impl Piped {
    /// Asserts that every tool of the pipe succeeded; returns the last one's outcome.
    #[track_caller]
    pub fn success(&self) -> &Outcome {
        for stage in &self.stages {
            stage.success();
        }
        self.last()
    }

    /// The last tool's outcome.
    pub fn last(&self) -> &Outcome {
        self.stages.last().expect("a pipe of at least one tool")
    }
}

/// What a finished run produced.
pub struct Outcome {
    display: String,
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\ncommand: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.display, self.code, self.stdout, self.stderr
        )
    }
}

impl Outcome {
    /// Asserts the exit code.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, Some(expected), "unexpected exit code{self:?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("internal error"),
            "the tool panicked{self:?}"
        );
        self.stderr_has_no_json();
        self
    }

    /// Asserts success.
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    /// Asserts a failure with `code`, nothing on stdout, and exactly one line on stderr that
    /// contains each of `words`.
    #[track_caller]
    pub fn fails(&self, code: i32, words: &[&str]) -> &Self {
        self.code(code);
        assert_eq!(self.stdout, "", "a failed run wrote to stdout{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr{self:?}");
        for word in words {
            assert!(lines[0].contains(word), "stderr lacks {word:?}{self:?}");
        }
        self
    }

    /// Asserts that `secret` appears in neither stdout nor stderr.
    #[track_caller]
    pub fn hides(&self, secret: &str) -> &Self {
        assert!(!secret.is_empty());
        assert!(
            !self.stdout.contains(secret),
            "stdout shows a secret{self:?}"
        );
        assert!(
            !self.stderr.contains(secret),
            "stderr shows a secret{self:?}"
        );
        self
    }

    /// The JSON documents on stdout, one per line, each checked against the published schema.
    #[track_caller]
    pub fn documents(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}{self:?}"));
                let errors: Vec<String> = schema()
                    .iter_errors(&value)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "document breaks the schema: {errors:?}{self:?}"
                );
                value
            })
            .collect()
    }

    /// The one document on stdout.
    #[track_caller]
    pub fn document(&self) -> Value {
        let mut documents = self.documents();
        assert_eq!(documents.len(), 1, "expected one document{self:?}");
        documents.remove(0)
    }

    #[track_caller]
    fn stderr_has_no_json(&self) {
        for line in self.stderr.lines() {
            let trimmed = line.trim_start();
            let looks_like_json = (trimmed.starts_with('{') || trimmed.starts_with('['))
                && serde_json::from_str::<Value>(trimmed).is_ok();
            assert!(!looks_like_json, "stderr carries JSON data{self:?}");
        }
    }
}

/// The published JSON Schema of the image document.
pub fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("docs/image-document.schema.json"))
            .expect("reading docs/image-document.schema.json");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    })
}

/// A name unique to this test run, for repositories and images (tests share the services).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Runs the aws-cli (installed by scripts/services.sh) against the local ECR API server: a
/// client we did not write, to check what our tools did.
pub fn aws_cli(args: &[&str]) -> (bool, String) {
    let output = Command::new(service("IMGPIPE_AWS_CLI"))
        .args(args)
        .args([
            "--endpoint-url",
            &service("AWS_ENDPOINT_URL_ECR"),
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch_home())
        .envs(services())
        .output()
        .expect("running aws-cli");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Runs the docker CLI (a client we did not write) against the test daemon with the classic
/// builder (the CLI here has no buildx); returns success and stdout followed by stderr.
pub fn docker(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .envs(services())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("running docker");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Every manifest media type, as the `Accept` header of a registry read.
pub const MANIFEST_ACCEPT: &str = "Accept: application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// A manifest as a registry served it.
#[derive(Debug)]
pub struct Served {
    /// The `Docker-Content-Digest` header.
    pub digest: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The manifest's bytes.
    pub body: Vec<u8>,
}

impl Served {
    /// The manifest as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON manifest")
    }
}

/// What the registry at `host` (plain HTTP, as on loopback) serves for
/// `repository:reference`, read by curl (a client we did not write) with every manifest type
/// accepted and Basic credentials when `user` gives them; `None` when it has no such manifest
/// (404). Any other answer fails the test: a refused login or a server error is not "absent".
pub fn registry_manifest(
    host: &str,
    repository: &str,
    reference: &str,
    user: Option<(&str, &str)>,
) -> Option<Served> {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-H", MANIFEST_ACCEPT, "-D"])
        .arg(&headers);
    if let Some((name, password)) = user {
        command.args(["-u", &format!("{name}:{password}")]);
    }
    // Loopback registries speak plain HTTP, as the Engine treats them; the ECR hosts TLS.
    let scheme = if host.starts_with("127.") || host.starts_with("localhost") {
        "http"
    } else {
        "https"
    };
    let output = command
        .arg(format!(
            "{scheme}://{host}/v2/{repository}/manifests/{reference}"
        ))
        .output()
        .expect("running curl");
    assert!(output.status.success(), "curl: {output:?}");
    let headers = std::fs::read_to_string(headers).unwrap();
    if headers.starts_with("HTTP/1.1 404") {
        return None;
    }
    assert!(
        headers.starts_with("HTTP/1.1 200"),
        "{host}/{repository}:{reference}: {headers}{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let header = |wanted: &str| {
        headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    Some(Served {
        digest: header("docker-content-digest").expect("a Docker-Content-Digest header"),
        content_type: header("content-type").expect("a Content-Type header"),
        body: output.stdout,
    })
}

/// Builds a small image of our own FROM the base image (a file holding `content`, so it differs
/// from the base), tagged `reference`, with the docker CLI; returns its id.
pub fn build_small(reference: &str, content: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo '{content}' > /marker\n",
            service("IMGPIPE_BASE_IMAGE")
        ),
    )
    .unwrap();
    let (ok, text) = docker(&[
        "build",
        "-q",
        "-t",
        reference,
        &dir.path().to_string_lossy(),
    ]);
    assert!(ok, "docker build: {text}");
    let (ok, id) = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    assert!(ok, "docker image inspect {reference}: {id}");
    id.trim().to_owned()
}

/// Builds `FROM scratch` plus a file holding `content`, for `platform`, tagged `tag`; returns
/// the image id. The classic builder records the platform in the image configuration.
pub fn build_for(platform: &str, tag: &str, content: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), content).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let (ok, text) = docker(&[
        "build",
        "-q",
        "--platform",
        platform,
        "-t",
        tag,
        &dir.path().to_string_lossy(),
    ]);
    assert!(ok, "docker build --platform {platform}: {text}");
    let (ok, id) = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert!(ok, "{id}");
    id.trim().to_owned()
}

/// Removes the named local references when a test ends (never the images behind other tags).
pub struct Refs(pub Vec<String>);

impl Drop for Refs {
    fn drop(&mut self) {
        for reference in &self.0 {
            let _ = docker(&["image", "rm", reference]);
        }
    }
}
