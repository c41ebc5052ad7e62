//! The JSON contract every tool keeps (docs/pipeline.md), as one table over every tool: each
//! runs for real (the ECR API server, the registry, the Docker Engine) with unknown fields in
//! its input, a stream, `--field`, malformed records, another schema version and a closed
//! stdout. The side effects of a refused record are shown through `ecr-repo`, whose effects
//! another client (aws-cli) can see.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::harness::{Run, TOOLS, aws_cli, build_for, in_terminal, root, service, tool, unique};

/// What the table's runs share: a build context, a findings file, a Docker config, a
/// repository in the ECR API server, and an image built and pushed once.
struct Fixtures {
    context: tempfile::TempDir,
    findings: PathBuf,
    docker_config: tempfile::TempDir,
    ecr_repository: String,
    /// img-build's document for the image (registry, repository, tags, image_id).
    built: Value,
    /// img-push's documents for two images of two platforms, for img-manifest to join.
    children: Vec<Value>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!(
                "FROM {}\nRUN echo contract > /marker\n",
                service("IMGPIPE_BASE_IMAGE")
            ),
        )
        .unwrap();
        let findings = context.path().join("findings.json");
        std::fs::write(&findings, r#"{"Results":[]}"#).unwrap();
        // Kept out of the context by its own ignore file, so the context hash stays put.
        std::fs::write(context.path().join(".dockerignore"), "findings.json\n").unwrap();
        let ecr_repository = unique("contract-ecr");
        tool("ecr-repo")
            .args(["--no-input", "--repository", &ecr_repository])
            .run()
            .success();
        let image = json!({
            "registry": service("IMGPIPE_REGISTRY"),
            "repository": unique("contract-img"),
            "tags": ["t1"],
        });
        let built = tool("img-build")
            .args([context.path()])
            .stdin(image.to_string())
            .run()
            .success()
            .document();
        let children = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|platform| {
                let reference = format!("{}/contract-child:{}", image["registry"].as_str().unwrap(), platform.replace('/', "-"));
                let id = build_for(platform, &reference, platform);
                let child = json!({"registry": image["registry"], "repository": "contract-child", "tags": [platform.replace('/', "-")], "image_id": id});
                tool("img-push").stdin(child.to_string()).run().success().document()
            })
            .collect();
        Fixtures {
            context,
            findings,
            docker_config: tempfile::tempdir().unwrap(),
            ecr_repository,
            built,
            children,
        }
    })
}

/// How the table runs one tool.
struct Case {
    /// A run that succeeds on an input holding `needs`.
    run: Run,
    /// The fields the input must carry, taken from the fixtures: record `i` of a stream takes
    /// `needs[i % needs.len()]`.
    needs: Vec<Map<String, Value>>,
    /// A field the tool writes, for `--field`.
    field: &'static str,
    /// One document out per document in; img-manifest joins its input into one.
    per_record: bool,
}

/// The fields of `doc` named.
fn taken(doc: &Value, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), doc[*n].clone()))
        .collect()
}

fn case(name: &str) -> Case {
    let f = fixtures();
    let context = f.context.path().to_string_lossy().into_owned();
    let mut needs = vec![Map::new()];
    let mut per_record = true;
    let (run, field) = match name {
        "ecr-login" => (
            tool(name).env("DOCKER_CONFIG", f.docker_config.path()),
            "login.username",
        ),
        "ecr-repo" => (
            tool(name).args(["--repository", &f.ecr_repository]),
            "repository_uri",
        ),
        "img-tag" => (
            tool(name)
                .args(["--context", &context, "--commit", &"1".repeat(40)])
                .args(["--branch", "main", "--registry", "127.0.0.1:5000"])
                .args(["--repository", "contract", "--tag", "raw:t1"]),
            "references",
        ),
        "img-build" => {
            needs = vec![taken(&f.built, &["registry", "repository", "tags"])];
            (tool(name).args([&context]), "image_id")
        }
        "img-push" => {
            needs = vec![taken(
                &f.built,
                &["registry", "repository", "tags", "image_id"],
            )];
            (tool(name), "digest")
        }
        "scan-gate" => (
            tool(name)
                .args(["--repository", "contract", "--findings"])
                .args([&f.findings]),
            "scan.verdict",
        ),
        "lifecycle-set" => (
            tool(name)
                .args(["--repository", &f.ecr_repository])
                .args(["--expire-untagged-after", "14"]),
            "lifecycle.rules",
        ),
        "img-manifest" => {
            needs = f
                .children
                .iter()
                .map(|child| taken(child, &["registry", "repository", "digest"]))
                .collect();
            per_record = false;
            (
                tool(name).args(["--tag", "contract-list"]),
                "manifest.format",
            )
        }
        other => panic!("the contract table has no case for {other}"),
    };
    Case {
        run,
        needs,
        field,
        per_record,
    }
}

/// `extra`'s fields, then the case's needs, as one document.
fn input(case: &Case, extra: &Value) -> Value {
    record(case, extra, 0)
}

/// `extra`'s fields, then what record `i` of a stream needs.
fn record(case: &Case, extra: &Value, i: usize) -> Value {
    let mut doc = extra.as_object().cloned().unwrap_or_default();
    doc.extend(case.needs[i % case.needs.len()].clone());
    Value::Object(doc)
}

#[test]
fn every_tool_keeps_unknown_fields_unchanged_and_in_order() {
    let unknown = json!({
        "zeta": {"nested": [1, {"deep": true}], "s": "x"},
        "custom_list": [null, 2.5, "z"],
        "alpha": "a",
    });
    for name in TOOLS {
        let case = case(name);
        let doc = input(&case, &unknown);
        let out = case.run.stdin(doc.to_string()).run();
        let got = out.success().document();
        for key in ["zeta", "custom_list", "alpha"] {
            assert_eq!(got[key], unknown[key], "{name} changed {key}{out:?}");
        }
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| ["zeta", "custom_list", "alpha"].contains(k))
            .collect();
        assert_eq!(keys, ["zeta", "custom_list", "alpha"], "{name}{out:?}");
        assert_eq!(
            got.as_object().unwrap().keys().next().map(String::as_str),
            Some("schema_version"),
            "{name}{out:?}"
        );
    }
}

#[test]
fn every_tool_writes_a_line_per_document_as_a_stream_comes() {
    for name in TOOLS {
        let case = case(name);
        let per_record = case.per_record;
        let stream = (0..2)
            .map(|i| record(&case, &json!({"n": i + 1}), i).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let out = case.run.stdin(stream).run();
        let docs = out.success().documents();
        let order: Vec<i64> = docs.iter().map(|d| d["n"].as_i64().unwrap()).collect();
        if per_record {
            assert_eq!(order, [1, 2], "{name}{out:?}");
        } else {
            // img-manifest joins its children: one document, built on the first.
            assert_eq!(order, [1], "{name}{out:?}");
            assert_eq!(
                docs[0]["platforms"].as_array().map(Vec::len),
                Some(2),
                "{name}{out:?}"
            );
        }
    }
}

#[test]
fn every_tool_prints_one_field_raw_and_refuses_a_field_it_cannot_have() {
    for name in TOOLS {
        let case = case(name);
        let field = case.field;
        let doc = input(&case, &json!({}));
        let out = case
            .run
            .args(["--field", field])
            .stdin(doc.to_string())
            .run();
        out.success();
        assert!(
            !out.stdout.is_empty() && !out.stdout.starts_with('{') && !out.stdout.contains('"'),
            "{name} --field {field} is not a raw value{out:?}"
        );
        let case = self::case(name);
        let doc = input(&case, &json!({}));
        case.run
            .args(["--field", "no_such_field"])
            .stdin(doc.to_string())
            .run()
            .fails(2, &["--field no_such_field", "no field no_such_field"]);
    }
}

#[test]
fn every_tool_refuses_malformed_json_with_its_line_and_column() {
    for name in TOOLS {
        let case = case(name);
        let mut text = input(&case, &json!({})).to_string();
        text.insert_str(1, "\n  \"broken\": [1,, ],");
        case.run.stdin(text).run().fails(
            65,
            &[
                "input record 1 is not valid JSON at line 2 column",
                "expected value",
            ],
        );
    }
}

#[test]
fn every_tool_names_the_field_path_of_a_wrong_type_and_another_schema_version() {
    for name in TOOLS {
        let case = case(name);
        let doc = input(&case, &json!({"labels": {"a": 1}}));
        case.run.stdin(doc.to_string()).run().fails(
            65,
            &["input record 1 (line 1): field labels.a: expected a string, found a number"],
        );
        let case = self::case(name);
        let doc = input(&case, &json!({"schema_version": 7}));
        case.run
            .stdin(doc.to_string())
            .run()
            .fails(65, &["schema_version 7 is not supported"]);
    }
}

#[test]
fn every_tool_prints_its_document_pretty_on_a_terminal_and_compact_in_a_pipe() {
    for name in TOOLS {
        let case = case(name);
        let doc = input(&case, &json!({"zeta": [1, 2]}));
        let out = in_terminal(case.run, Some(doc.to_string().as_bytes()));
        assert_eq!(out.code, Some(0), "{name}{out:?}");
        // The terminal turns each \n into \r\n; the document is the text from its first
        // line, `{`, to its last, `}`.
        let text = out.stdout.replace("\r\n", "\n");
        let start = text
            .find("{\n  \"schema_version\": 1,\n")
            .unwrap_or_else(|| panic!("{name}: no pretty-printed document on the terminal{out:?}"));
        let end = text.rfind("\n}").expect("the document's end") + 2;
        let shown: Value = serde_json::from_str(&text[start..end]).unwrap_or_else(|e| {
            panic!("{name}: the terminal's document does not parse: {e}{out:?}")
        });
        assert_eq!(shown["zeta"], json!([1, 2]), "{name}{out:?}");
        assert!(
            text[start..end].contains("\n  \"zeta\": [\n    1,\n    2\n  ]"),
            "{name}{out:?}"
        );
        // Piped, the same run is one compact line.
        let case = self::case(name);
        let out = case.run.stdin(doc.to_string()).run();
        out.success();
        assert_eq!(out.stdout.lines().count(), 1, "{name}{out:?}");
        assert!(
            out.stdout.starts_with("{\"schema_version\":1,"),
            "{name}{out:?}"
        );
    }
}

#[test]
fn every_tool_ends_quietly_when_its_reader_goes() {
    for name in TOOLS {
        let case = case(name);
        let doc = input(&case, &json!({}));
        let mut command = case.run.into_command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        // Close the reading end before the tool writes anything, as `tool | head -0` would.
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{doc}").unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{name}: stderr: {stderr}");
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("Broken pipe")
                && !stderr.contains("error"),
            "{name}: stderr: {stderr}"
        );
    }
}

#[test]
fn a_stream_gives_one_line_per_document_in_order() {
    let names: Vec<String> = (0..3).map(|_| unique("contract-stream")).collect();
    // NDJSON, then two objects on one line, then a pretty-printed one.
    let input = format!(
        "{{\"repository\":\"{}\",\"n\":1}}\n{{\"repository\":\"{}\",\"n\":2}}{{\"repository\":\"{}\",\"n\":3}}\n{{\n  \"repository\": \"{}\",\n  \"n\": 4\n}}\n",
        names[0], names[1], names[2], names[0]
    );
    let out = tool("ecr-repo").stdin(input).run();
    let docs = out.success().documents();
    assert_eq!(out.stdout.lines().count(), 4);
    let got: Vec<(String, i64)> = docs
        .iter()
        .map(|d| {
            (
                d["repository"].as_str().unwrap().to_owned(),
                d["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (names[0].clone(), 1),
            (names[1].clone(), 2),
            (names[2].clone(), 3),
            (names[0].clone(), 4)
        ]
    );
    assert_eq!(docs[0]["repository_settings"]["created"], true);
    assert_eq!(
        docs[3]["repository_settings"]["created"], false,
        "the second mention finds it"
    );
}

#[test]
fn flags_override_input_fields() {
    let from_flag = unique("contract-flag");
    let out = tool("ecr-repo")
        .args(["--repository", &from_flag])
        .stdin(r#"{"repository":"from-input-never-created"}"#)
        .run();
    let doc = out.success().document();
    assert_eq!(doc["repository"], from_flag.as_str());
    assert!(
        doc["repository_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{from_flag}"))
    );
    let (found, _) = aws_cli(&[
        "ecr",
        "describe-repositories",
        "--repository-names",
        "from-input-never-created",
    ]);
    assert!(!found, "the input's repository must not have been created");
}

#[test]
fn malformed_json_fails_with_line_and_column_and_changes_nothing() {
    let name = unique("contract-bad");
    let input = format!("{{\"repository\": \"{name}\",\n  \"tags\": [\"a\",, ]}}");
    tool("ecr-repo").stdin(input).run().fails(
        65,
        &[
            "input record 1 is not valid JSON at line 2 column",
            "expected value",
        ],
    );
    let (found, _) = aws_cli(&["ecr", "describe-repositories", "--repository-names", &name]);
    assert!(!found, "nothing may be created from a malformed record");
}

#[test]
fn wrong_field_types_name_the_field_path() {
    let name = unique("contract-type");
    let input = format!(
        "{{\"repository\":\"{name}\"}}\n\n{{\"repository\":\"{name}\",\n\"labels\":{{\"a\":1}}}}\n"
    );
    let out = tool("ecr-repo").stdin(input).run();
    // The first record is done and written; the second is refused before anything happens.
    assert_eq!(out.code, Some(65), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("input record 2 (line 3): field labels.a: expected a string, found a number"),
        "{out:?}"
    );

    tool("ecr-repo").stdin("[1, 2]").run().fails(
        65,
        &["input record 1 (line 1): expected a JSON object, found an array"],
    );
    tool("ecr-repo")
        .stdin(r#"{"schema_version": 7, "repository": "x1"}"#)
        .run()
        .fails(65, &["schema_version 7 is not supported"]);
}

#[test]
fn empty_stdin_and_no_input_work_from_flags_alone() {
    let name = unique("contract-empty");
    let doc = tool("ecr-repo")
        .args(["--repository", &name])
        .stdin("")
        .run()
        .success()
        .document();
    assert_eq!(doc["repository"], name.as_str());
    let doc = tool("ecr-repo")
        .args(["--repository", &name, "--no-input"])
        .stdin(r#"{"ignored": true}"#)
        .run()
        .success()
        .document();
    assert_eq!(doc.get("ignored"), None::<&Value>);
}

#[test]
fn help_lists_the_exit_codes() {
    for name in TOOLS {
        let out = tool(name).args(["--help"]).run();
        out.success();
        assert!(out.stdout.contains("EXIT STATUS:"), "{out:?}");
        for (code, meaning) in shared::exit::TABLE {
            assert!(
                out.stdout.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with(&format!("{}  ", code.0))
                        && meaning.starts_with(l[code.0.to_string().len()..].trim())
                }),
                "{name} --help lacks exit code {} ({meaning}){out:?}",
                code.0
            );
        }
    }
    // The README's table is the same one.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (code, meaning) in shared::exit::TABLE {
        assert!(
            readme.contains(&format!("| {} | {meaning} |", code.0)),
            "README.md lacks exit code {} ({meaning})",
            code.0
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    // One line, like every other error: what is wrong, and where the usage is.
    tool("ecr-repo").args(["--no-such-flag"]).run().fails(
        2,
        &["unexpected argument '--no-such-flag'", "ecr-repo --help"],
    );
    tool("img-tag").args(["--repository"]).run().fails(
        2,
        &["a value is required for '--repository", "img-tag --help"],
    );
    // --help and --version are answers, not errors: stdout, exit 0.
    let help = tool("scan-gate").args(["--help"]).run();
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("Usage: scan-gate"), "{help:?}");
}

#[test]
fn the_schema_describes_every_known_field() {
    let text = std::fs::read_to_string(root().join("docs/image-document.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    let known: Vec<&str> = shared::document::FIELDS.iter().map(|f| f.name).collect();
    let listed: Vec<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(
        known, listed,
        "docs/image-document.schema.json and shared::document::FIELDS differ"
    );
    let pipeline = std::fs::read_to_string(root().join("docs/pipeline.md")).unwrap();
    for name in known {
        assert!(
            pipeline.contains(&format!("`{name}`")),
            "docs/pipeline.md does not document {name}"
        );
    }
}

/// The fields a tool's code sets (`.set("name"` or `.set_some("name"`, the document's only
/// setters), outside its unit tests.
fn fields_set_by(tool_dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut fields = std::collections::BTreeSet::new();
    let mut dirs = vec![tool_dir.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for call in [".set(", ".set_some("] {
                for piece in code.split(call).skip(1) {
                    let Some(quoted) = piece.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let name: String = quoted
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    fields.insert(name);
                }
            }
        }
    }
    fields
}

#[test]
fn the_pipeline_docs_name_the_tools_that_write_each_field() {
    let tools_dir = root().join("tools");
    let mut written = std::collections::BTreeMap::<String, Vec<String>>::new();
    for entry in std::fs::read_dir(&tools_dir).unwrap() {
        let dir = entry.unwrap().path();
        let tool = dir.file_name().unwrap().to_string_lossy().into_owned();
        for field in fields_set_by(&dir) {
            written.entry(field).or_default().push(tool.clone());
        }
    }
    assert!(written.len() > 10, "too few fields found: {written:?}");
    for (field, tools) in &written {
        assert!(
            shared::document::FIELDS.iter().any(|f| f.name == field),
            "{tools:?} set `{field}`, which shared::document::FIELDS does not know"
        );
    }
    let pipeline = std::fs::read_to_string(root().join("docs/pipeline.md")).unwrap();
    let mut documented = std::collections::BTreeMap::new();
    for line in pipeline.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let field = cells[1].trim_matches('`').to_owned();
        if field == "schema_version" {
            continue;
        }
        let mut writers: Vec<String> = cells[3]
            .split(", ")
            .filter(|w| tools_dir.join(w).is_dir())
            .map(str::to_owned)
            .collect();
        writers.sort();
        documented.insert(field, writers);
    }
    for field in shared::document::FIELDS.iter().map(|f| f.name) {
        if field == "schema_version" {
            continue;
        }
        let mut code = written.get(field).cloned().unwrap_or_default();
        code.sort();
        assert_eq!(
            documented.get(field),
            Some(&code),
            "docs/pipeline.md's writers of `{field}` differ from the code's"
        );
    }
}
