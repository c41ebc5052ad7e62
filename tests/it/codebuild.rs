//! A CodeBuild emulator for the buildspec examples: phases in order, each command in bash with
//! the shell's variables and working directory carried from one command to the next (buildspec
//! version 0.2), `finally` and `on-failure`, `post_build` after a failed `build` with
//! `CODEBUILD_BUILD_SUCCEEDING=0`, `env.variables` below the project's variables below the
//! start-build overrides, `exported-variables`, batch build graphs; and the checks of a build's
//! declared artifacts. The tests that use it are in `buildspecs.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use crate::harness::{bin_dir, registry_manifest, root, service, services};

use crate::buildspecs::{ACCOUNT, folder};

/// What one phase did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Succeeded,
    Failed,
    Skipped,
}

/// A finished build.
pub(crate) struct Build {
    /// CODEBUILD_SRC_DIR.
    pub(crate) src: PathBuf,
    /// Each phase that the buildspec has, in order, with what it did.
    pub(crate) phases: Vec<(String, Phase)>,
    /// The build's status (every phase succeeded).
    pub(crate) succeeded: bool,
    /// The exported variables' values at the end of the build.
    pub(crate) exported: BTreeMap<String, String>,
    /// The buildspec, parsed.
    pub(crate) spec: Yaml,
    /// The buildspec's WORK variable at the end, where the examples keep the image documents.
    pub(crate) work: Option<PathBuf>,
    /// Every command with its output.
    pub(crate) log: String,
}

impl std::fmt::Debug for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\nsource: {}\nphases: {:?}\nexported: {:?}\n--- log ---\n{}",
            self.src.display(),
            self.phases,
            self.exported,
            self.log
        )
    }
}

impl Build {
    pub(crate) fn phase(&self, name: &str) -> Phase {
        self.phases
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Phase::Skipped, |(_, p)| *p)
    }

    /// Asserts that the build succeeded.
    #[track_caller]
    pub(crate) fn succeeded(&self) -> &Self {
        assert!(self.succeeded, "the build failed{self:?}");
        self
    }

    pub(crate) fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.src.join(relative))
            .unwrap_or_else(|e| panic!("reading {relative}: {e}{self:?}"))
    }

    /// An image document the buildspec kept in its WORK directory.
    pub(crate) fn document(&self, name: &str) -> Value {
        let work = self
            .work
            .as_ref()
            .unwrap_or_else(|| panic!("no WORK{self:?}"));
        let text = std::fs::read_to_string(work.join(name))
            .unwrap_or_else(|e| panic!("reading $WORK/{name}: {e}{self:?}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("$WORK/{name}: {e}{self:?}"))
    }

    pub(crate) fn json(&self, relative: &str) -> Value {
        serde_json::from_str(&self.read(relative))
            .unwrap_or_else(|e| panic!("{relative} is not JSON: {e}{self:?}"))
    }
}

/// The source of a build: a copy of examples/sample-app made into a git repository on `main`
/// with one commit, as CodeBuild checks it out. Returns the directory and the commit.
pub(crate) fn source() -> (tempfile::TempDir, String) {
    source_of("examples/sample-app")
}

/// The source of a build from the example application in `app` (see [`source`]).
pub(crate) fn source_of(app: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let app = root().join(app);
    for entry in std::fs::read_dir(&app).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=imgpipe tests",
                "-c",
                "user.email=tests@imgpipe.invalid",
            ])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("running git");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "sample application"]);
    let commit = git(&["rev-parse", "HEAD"]);
    (dir, commit)
}

/// The project definition's environment variables (all PLAINTEXT: the runner has no Parameter
/// Store or Secrets Manager).
pub(crate) fn project_variables() -> Vec<(String, String)> {
    let project: Value =
        serde_json::from_str(&std::fs::read_to_string(folder().join("project.json")).unwrap())
            .unwrap();
    project["environment"]["environmentVariables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "PLAINTEXT", "unsupported variable type: {v}");
            (
                v["name"].as_str().unwrap().to_owned(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `value` in single quotes for bash.
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Saves the shell's variables (but bash's own and read-only ones) and the working directory to
/// the state file, for the next command; run on exit of every command's script.
pub(crate) const SAVE_STATE: &str = r#"
__cb_save() {
  local __cb_n
  {
    for __cb_n in $(compgen -v); do
      case "$__cb_n" in
        BASH* | SHELLOPTS | EUID | PPID | UID | SHLVL | RANDOM | SRANDOM | SECONDS | LINENO | \
        HISTCMD | FUNCNAME | GROUPS | DIRSTACK | PIPESTATUS | OPTIND | OPTARG | OPTERR | _ | \
        PWD | OLDPWD | COMP_* | EPOCHREALTIME | EPOCHSECONDS | HOSTNAME | HOSTTYPE | MACHTYPE | \
        OSTYPE | IFS | PS1 | PS2 | PS4 | __cb_*) continue ;;
      esac
      [[ "${!__cb_n@a}" == *r* ]] && continue
      declare -p "$__cb_n"
    done
    printf 'cd %q\n' "$PWD"
  } > "$__cb_state"
}
trap '__cb_rc=$?; __cb_save; exit $__cb_rc' EXIT
"#;

/// Runs commands of a build in the way buildspec version 0.2 does: each in bash, in the state
/// the previous one left.
pub(crate) struct Shell {
    pub(crate) state: PathBuf,
    pub(crate) scripts: tempfile::TempDir,
    pub(crate) count: usize,
    pub(crate) log: File,
    pub(crate) log_path: PathBuf,
}

impl Shell {
    /// A shell whose first command starts in `cwd` with exactly `env`.
    pub(crate) fn new(env: &BTreeMap<String, String>, cwd: &Path) -> Self {
        let scripts = tempfile::tempdir().unwrap();
        let state = scripts.path().join("state");
        let mut text = String::new();
        for (name, value) in env {
            writeln!(text, "declare -x {name}={}", shell_quote(value)).unwrap();
        }
        writeln!(text, "cd {}", shell_quote(&cwd.to_string_lossy())).unwrap();
        std::fs::write(&state, text).unwrap();
        let log_path = scripts.path().join("log");
        let log = File::create(&log_path).unwrap();
        Self {
            state,
            scripts,
            count: 0,
            log,
            log_path,
        }
    }

    /// Sets a variable for the commands that follow.
    pub(crate) fn set(&self, name: &str, value: &str) {
        let mut text = std::fs::read_to_string(&self.state).unwrap();
        // Before the trailing `cd`, which must stay last (it is what the next command starts in).
        let cd = text.rfind("\ncd ").map_or(text.len(), |i| i + 1);
        text.insert_str(cd, &format!("declare -x {name}={}\n", shell_quote(value)));
        std::fs::write(&self.state, text).unwrap();
    }

    /// Runs one command; true when it exits with 0.
    pub(crate) fn run(&mut self, phase: &str, command: &str) -> bool {
        use std::io::Write as _;
        self.count += 1;
        let script = self.scripts.path().join(format!("{:03}.sh", self.count));
        let text = format!(
            "__cb_state={state}\n{SAVE_STATE}\nsource \"$__cb_state\"\n{command}\n",
            state = shell_quote(&self.state.to_string_lossy()),
        );
        std::fs::write(&script, text).unwrap();
        writeln!(self.log, "[{phase}] Running command {command}").unwrap();
        self.log.flush().unwrap();
        let status = Command::new("bash")
            .arg(&script)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(self.log.try_clone().unwrap())
            .stderr(self.log.try_clone().unwrap())
            .status()
            .expect("running bash");
        writeln!(self.log, "[{phase}] exit status {:?}", status.code()).unwrap();
        status.success()
    }

    /// The values of `names` in the shell's current state (unset ones are left out).
    pub(crate) fn values(&self, names: &[String]) -> BTreeMap<String, String> {
        let mut script = format!("source {}\n", shell_quote(&self.state.to_string_lossy()));
        for name in names {
            writeln!(
                script,
                "[ -n \"${{{name}+x}}\" ] && printf '%s\\0%s\\0' {name} \"${{{name}}}\""
            )
            .unwrap();
        }
        script.push_str("true\n");
        let output = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env_clear()
            .output()
            .unwrap();
        assert!(output.status.success());
        let fields: Vec<String> = output
            .stdout
            .split(|b| *b == 0)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        fields
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// A YAML scalar as the string CodeBuild makes of it (numbers and booleans included).
pub(crate) fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A list of commands (strings).
pub(crate) fn commands(value: Option<&Yaml>) -> Vec<String> {
    value.map_or_else(Vec::new, |v| {
        v.as_sequence()
            .unwrap_or_else(|| panic!("commands must be a list, found {v:?}"))
            .iter()
            .map(scalar)
            .collect()
    })
}

/// CodeBuild's variables for a build of `commit` checked out in `src`, pushed to `main`.
pub(crate) fn codebuild_variables(
    src: &Path,
    commit: &str,
    number: u32,
) -> BTreeMap<String, String> {
    let region = service("AWS_DEFAULT_REGION");
    let project = "my-app-image";
    // A build id is the project name and a UUID (version 4 in form, made from the clock).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let (secs, sub, pid) = (now.as_secs(), now.subsec_nanos(), std::process::id());
    let uuid = format!(
        "{sub:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        secs & 0xffff,
        pid & 0xfff,
        (secs >> 16) & 0xfff,
        ((secs << 20) ^ u64::from(pid) ^ u64::from(number)) & 0xffff_ffff_ffff
    );
    let id = format!("{project}:{uuid}");
    let start_ms = now.as_millis();
    let vars = [
        ("AWS_DEFAULT_REGION", region.clone()),
        ("AWS_REGION", region.clone()),
        ("CODEBUILD_CI", "true".to_owned()),
        ("CODEBUILD_BUILD_ID", id.clone()),
        (
            "CODEBUILD_BUILD_ARN",
            format!("arn:aws:codebuild:{region}:{ACCOUNT}:build/{id}"),
        ),
        ("CODEBUILD_BUILD_NUMBER", number.to_string()),
        (
            "CODEBUILD_BUILD_IMAGE",
            "aws/codebuild/amazonlinux2-x86_64-standard:5.0".to_owned(),
        ),
        ("CODEBUILD_BUILD_SUCCEEDING", "1".to_owned()),
        ("CODEBUILD_INITIATOR", "GitHub-Hookshot/imgpipe".to_owned()),
        (
            "CODEBUILD_PROJECT_ARN",
            format!("arn:aws:codebuild:{region}:{ACCOUNT}:project/{project}"),
        ),
        ("CODEBUILD_RESOLVED_SOURCE_VERSION", commit.to_owned()),
        ("CODEBUILD_SOURCE_VERSION", commit.to_owned()),
        (
            "CODEBUILD_SOURCE_REPO_URL",
            "https://github.com/example/my-app.git".to_owned(),
        ),
        ("CODEBUILD_SRC_DIR", src.to_string_lossy().into_owned()),
        ("CODEBUILD_START_TIME", start_ms.to_string()),
        ("CODEBUILD_WEBHOOK_EVENT", "PUSH".to_owned()),
        ("CODEBUILD_WEBHOOK_HEAD_REF", "refs/heads/main".to_owned()),
        ("CODEBUILD_WEBHOOK_TRIGGER", "branch/main".to_owned()),
        ("CODEBUILD_LOG_PATH", uuid.clone()),
        (
            "CODEBUILD_KMS_KEY_ID",
            format!("arn:aws:kms:{region}:{ACCOUNT}:alias/aws/s3"),
        ),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The start-build overrides every test build gets: its own repository, the ECR API server's
/// account (whose registry host the local ECR serves), no download of the tools (they are on
/// PATH).
pub(crate) fn overrides(repository: &str) -> Vec<(String, String)> {
    [
        ("IMAGE_REPO_NAME", repository.to_owned()),
        ("AWS_ACCOUNT_ID", ACCOUNT.to_owned()),
        ("IMGPIPE_URL", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A build's starting environment and its exported variables' names. Lowest precedence first:
/// the build image's, the buildspec's env, the project's variables, the start-build overrides;
/// CodeBuild's own variables last.
pub(crate) fn environment(
    name: &str,
    spec: &Yaml,
    src: &Path,
    commit: &str,
    number: u32,
    overrides: &[(String, String)],
    home: &Path,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut env = BTreeMap::new();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.insert("PATH".to_owned(), path);
    env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
    env.insert("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned());
    for name in [
        "DOCKER_HOST",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        if let Some(value) = services().get(name) {
            env.insert(name.to_owned(), value.clone());
        }
    }
    let mut exported_names = Vec::new();
    if let Some(section) = spec.get("env") {
        for key in ["parameter-store", "secrets-manager"] {
            assert!(
                section.get(key).is_none(),
                "{name}: the runner does not support env.{key}"
            );
        }
        if let Some(shell) = section.get("shell") {
            assert_eq!(scalar(shell), "bash", "{name}: the runner runs bash");
        }
        if let Some(vars) = section.get("variables").and_then(Yaml::as_mapping) {
            for (key, value) in vars {
                env.insert(scalar(key), scalar(value));
            }
        }
        exported_names = commands(section.get("exported-variables"));
    }
    env.extend(project_variables());
    env.extend(overrides.iter().cloned());
    env.extend(codebuild_variables(src, commit, number));

    (env, exported_names)
}

/// Runs the buildspec `name` of the examples in `src` (a [`source`]) with the start-build
/// `overrides`.
pub(crate) fn run(name: &str, src: &Path, commit: &str, overrides: &[(String, String)]) -> Build {
    let spec = parse(&folder().join(name));
    assert!(
        spec.get("batch").is_none(),
        "{name}: a batch buildspec: run its builds with run_batch"
    );
    run_spec(name, &spec, src, commit, overrides)
}

/// Reads a buildspec, and refuses what the runner does not do.
pub(crate) fn parse(path: &Path) -> Yaml {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap();
    let spec: Yaml =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    assert_eq!(
        scalar(&spec["version"]),
        "0.2",
        "{name}: the runner knows buildspec version 0.2"
    );
    for unsupported in ["run-as", "proxy"] {
        assert!(
            spec.get(unsupported).is_none(),
            "{name}: the runner does not support `{unsupported}`"
        );
    }
    spec
}

/// One build of a batch: its identifier and build.
type BatchBuild = (String, Build);

/// Runs the builds of a batch buildspec (`batch.build-graph`, or `batch.build-list`) in
/// dependency order, each in its own copy of `src` with CODEBUILD_BATCH_BUILD_IDENTIFIER set and
/// the entry's `env.variables` over the `overrides`. An entry's `buildspec` is looked up by file
/// name beside the batch buildspec (a real project names it relative to CODEBUILD_SRC_DIR); an
/// entry without one runs the batch buildspec's own phases. A build whose dependency failed
/// (without `ignore-failure`) does not run, as in CodeBuild.
pub(crate) fn run_batch(
    path: &Path,
    src: &Path,
    commit: &str,
    overrides: &[(String, String)],
) -> Vec<BatchBuild> {
    let spec = parse(path);
    let batch = spec.get("batch").expect("a batch buildspec");
    let entries = batch
        .get("build-graph")
        .or_else(|| batch.get("build-list"))
        .and_then(Yaml::as_sequence)
        .expect("the runner runs batch.build-graph and batch.build-list");
    let mut done: Vec<(String, bool)> = Vec::new();
    let mut builds = Vec::new();
    let copies = tempfile::tempdir().unwrap();
    while done.len() < entries.len() {
        let ready = entries.iter().find(|entry| {
            let id = scalar(&entry["identifier"]);
            !done.iter().any(|(d, _)| *d == id)
                && commands(entry.get("depend-on"))
                    .iter()
                    .all(|dep| done.iter().any(|(d, _)| d == dep))
        });
        let entry = ready.unwrap_or_else(|| {
            panic!(
                "{}: a dependency cycle or an unknown depend-on",
                path.display()
            )
        });
        let id = scalar(&entry["identifier"]);
        let blocked = commands(entry.get("depend-on")).iter().any(|dep| {
            let failed = done.iter().any(|(d, ok)| d == dep && !ok);
            let ignored = entries.iter().any(|e| {
                scalar(&e["identifier"]) == *dep
                    && e.get("ignore-failure")
                        .is_some_and(|v| v.as_bool() == Some(true))
            });
            failed && !ignored
        });
        if blocked {
            done.push((id, false));
            continue;
        }
        let copy = copies.path().join(&id);
        let status = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "copying the source for {id}");
        let mut vars = overrides.to_vec();
        if let Some(map) = entry
            .get("env")
            .and_then(|e| e.get("variables"))
            .and_then(Yaml::as_mapping)
        {
            vars.extend(map.iter().map(|(k, v)| (scalar(k), scalar(v))));
        }
        vars.push(("CODEBUILD_BATCH_BUILD_IDENTIFIER".to_owned(), id.clone()));
        if let Some(path) = arm_path(entry, &copies.path().join(format!("{id}.arm"))) {
            vars.push(("PATH".to_owned(), path));
        }
        let (name, build_spec) = match entry.get("buildspec") {
            Some(file) => {
                let file = scalar(file);
                let name = Path::new(&file).file_name().unwrap().to_owned();
                let sibling = path.with_file_name(&name);
                (sibling.display().to_string(), parse(&sibling))
            }
            None => (path.display().to_string(), spec.clone()),
        };
        let build = run_spec(&name, &build_spec, &copy, commit, &vars);
        done.push((id.clone(), build.succeeded));
        builds.push((id, build));
    }
    // The copies are the builds' source directories: keep them for the caller's checks.
    let _ = copies.keep();
    builds
}

/// For a batch entry on an ARM host (`env.type: ARM_CONTAINER`), the PATH of its build: this
/// x86 machine stands in for the ARM host, so its `cc` is an aarch64 compiler (Debian's
/// gcc-aarch64-linux-gnu, which scripts/services.sh installs), as a Graviton host's own `cc`
/// makes aarch64 programs. `None` for any other entry.
fn arm_path(entry: &Yaml, shim: &Path) -> Option<String> {
    let kind = entry.get("env").and_then(|e| e.get("type")).map(scalar)?;
    if !kind.starts_with("ARM_") {
        return None;
    }
    let compiler = "/usr/bin/aarch64-linux-gnu-gcc";
    assert!(
        Path::new(compiler).exists(),
        "{compiler} is missing: scripts/services.sh up installs it for the ARM builds"
    );
    std::fs::create_dir_all(shim).unwrap();
    let cc = shim.join("cc");
    let _ = std::fs::remove_file(&cc);
    std::os::unix::fs::symlink(compiler, &cc).unwrap();
    Some(format!(
        "{}:{}:{}",
        shim.display(),
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// Runs the phases of `spec` (named `name` in messages) as one build.
pub(crate) fn run_spec(
    name: &str,
    spec: &Yaml,
    src: &Path,
    commit: &str,
    overrides: &[(String, String)],
) -> Build {
    static NUMBER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let number = NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    // HOME (~/.docker for ecr-login's credentials) lives as long as the build.
    let home = tempfile::tempdir().unwrap();
    let (env, exported_names) =
        environment(name, spec, src, commit, number, overrides, home.path());
    let mut shell = Shell::new(&env, src);
    let mut phases = Vec::new();
    let mut succeeded = true;
    let mut stop = false;
    let empty = Yaml::Null;
    for phase in ["install", "pre_build", "build", "post_build"] {
        let Some(section) = spec.get("phases").and_then(|p| p.get(phase)) else {
            continue;
        };
        let section = if section.is_null() { &empty } else { section };
        if stop {
            phases.push((phase.to_owned(), Phase::Skipped));
            continue;
        }
        for key in ["run-as", "runtime-versions"] {
            assert!(
                section.get(key).is_none(),
                "{name}: the runner does not support phases.{phase}.{key}"
            );
        }
        let mut ok = true;
        for command in commands(section.get("commands")) {
            if !shell.run(phase, &command) {
                ok = false;
                break;
            }
        }
        // `finally` runs whether or not the commands failed.
        for command in commands(section.get("finally")) {
            if !shell.run(phase, &command) {
                ok = false;
                break;
            }
        }
        phases.push((
            phase.to_owned(),
            if ok { Phase::Succeeded } else { Phase::Failed },
        ));
        if !ok {
            succeeded = false;
            shell.set("CODEBUILD_BUILD_SUCCEEDING", "0");
            let on_failure = section.get("on-failure").map_or("ABORT".to_owned(), scalar);
            assert!(
                on_failure == "ABORT" || on_failure == "CONTINUE",
                "{name}: phases.{phase}.on-failure must be ABORT or CONTINUE"
            );
            // A failed install or pre_build ends the build; a failed build still runs
            // post_build (CodeBuild's phase transitions), as does on-failure: CONTINUE.
            if on_failure == "ABORT" && phase != "build" {
                stop = true;
            }
        }
    }
    let exported = shell.values(&exported_names);
    let work = shell
        .values(&["WORK".to_owned()])
        .remove("WORK")
        .map(PathBuf::from);
    let log = shell.log();
    Build {
        src: src.to_owned(),
        phases,
        succeeded,
        exported,
        spec: spec.clone(),
        work,
        log,
    }
}

/// Reads a JUnit file with Python's XML parser (a parser we did not write): the number of test
/// cases, which must be consistent with the suites' counts.
pub(crate) fn junit_testcases(path: &Path) -> usize {
    let python = Path::new(&service("IMGPIPE_AWS_CLI")).with_file_name("python3");
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
assert root.tag in ("testsuite", "testsuites"), root.tag
total = 0
for suite in suites:
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases), (suite.get("tests"), len(cases))
    total += len(cases)
print(total)
"#;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "{} is not a valid JUnit report: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// What the local ECR says `reference` (host/repository:tag or @digest) points at: its
/// manifest digest, read by curl with the ECR API server's token; None when it does not
/// resolve.
pub(crate) fn resolve(reference: &str) -> Option<String> {
    let (host, rest) = reference.split_once('/')?;
    let (repository, version) = rest.rsplit_once('@').or_else(|| rest.rsplit_once(':'))?;
    let user = service("IMGPIPE_AUTH_REGISTRY_USER");
    let password = service("IMGPIPE_AUTH_REGISTRY_PASSWORD");
    registry_manifest(host, repository, version, Some((&user, &password)))
        .map(|served| served.digest)
}

/// Checks every artifact and report file the buildspec declares: it exists, and the ones with
/// a known format are valid (image_uri.txt resolves in the registry, imagedefinitions.json
/// names a container and its image, JSON parses, JUnit reports have test cases).
#[track_caller]
pub(crate) fn check_outputs(build: &Build) {
    let files = commands(build.spec.get("artifacts").and_then(|a| a.get("files")));
    if build.spec.get("artifacts").is_some() {
        assert!(!files.is_empty(), "artifacts without files{build:?}");
    }
    let base = build
        .spec
        .get("artifacts")
        .and_then(|a| a.get("base-directory"))
        .map_or_else(|| build.src.clone(), |b| build.src.join(scalar(b)));
    for file in &files {
        assert!(
            !file.contains('*'),
            "the runner checks named artifact files, not patterns: {file}"
        );
        let path = base.join(file);
        assert!(path.is_file(), "artifact {file} was not written{build:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        if name == "image_uri.txt" {
            let uri = text.trim_end_matches('\n');
            assert!(!uri.is_empty() && !uri.contains('\n'), "{file}: {text:?}");
            assert!(
                resolve(uri).is_some(),
                "{file} names {uri}, which the registry does not resolve{build:?}"
            );
        } else if name == "imagedefinitions.json" {
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not JSON: {e}{build:?}"));
            let list = value.as_array().unwrap_or_else(|| panic!("{file}: {text}"));
            assert!(!list.is_empty(), "{file}: {text}");
            for item in list {
                assert!(
                    item["name"].as_str().is_some_and(|n| !n.is_empty()),
                    "{text}"
                );
                let uri = item["imageUri"].as_str().unwrap();
                assert!(resolve(uri).is_some(), "{file}: {uri} does not resolve");
            }
        } else if name.ends_with(".json") {
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{file} is not JSON: {e}{build:?}"));
        }
    }
    if let Some(reports) = build.spec.get("reports").and_then(Yaml::as_mapping) {
        for (group, report) in reports {
            let format = report
                .get("file-format")
                .map_or("JUNITXML".to_owned(), scalar);
            let base = report
                .get("base-directory")
                .map_or_else(|| build.src.clone(), |b| build.src.join(scalar(b)));
            for file in commands(report.get("files")) {
                let path = base.join(&file);
                assert!(
                    path.is_file(),
                    "report {} file {file} was not written{build:?}",
                    scalar(group)
                );
                if format == "JUNITXML" {
                    assert!(
                        junit_testcases(&path) > 0,
                        "report {file} has no test cases{build:?}"
                    );
                }
            }
        }
    }
}
