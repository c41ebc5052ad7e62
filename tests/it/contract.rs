//! The JSON contract every tool keeps (docs/pipeline.md), shown through `ecr-repo` against the
//! ECR API server: pass-through, streams, flag override, raw fields, malformed input, broken pipe.

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::harness::{TOOLS, aws_cli, root, tool, unique};

#[test]
fn unknown_fields_pass_through_unchanged_and_in_order() {
    let name = unique("contract-pass");
    let input = json!({
        "zeta": {"nested": [1, {"deep": true}], "s": "x"},
        "repository": name,
        "labels": {"team": "a"},
        "custom_list": [null, 2.5, "z"],
    });
    let out = tool("ecr-repo").stdin(input.to_string()).run();
    let doc = out.success().document();
    assert_eq!(doc["zeta"], input["zeta"]);
    assert_eq!(doc["labels"], input["labels"]);
    assert_eq!(doc["custom_list"], input["custom_list"]);
    assert_eq!(doc["schema_version"], 1);
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys[..5],
        [
            "schema_version",
            "zeta",
            "repository",
            "labels",
            "custom_list"
        ]
    );
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
fn field_prints_one_value_raw() {
    let name = unique("contract-field");
    let out = tool("ecr-repo")
        .args(["--repository", &name, "--field", "repository_uri"])
        .run();
    out.success();
    let line = out.stdout.trim_end_matches('\n');
    assert!(
        !line.contains('"') && line.ends_with(&format!("/{name}")),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().count(), 1);

    let out = tool("ecr-repo")
        .args([
            "--repository",
            &name,
            "--field",
            "repository_settings.tag_mutability",
        ])
        .run();
    assert_eq!(out.success().stdout, "MUTABLE\n");

    tool("ecr-repo")
        .args(["--repository", &name, "--field", "digest", "-q"])
        .run()
        .fails(65, &["no field digest"]);
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
fn a_closed_stdout_is_a_quiet_success() {
    let name = unique("contract-pipe");
    let mut command = tool("ecr-repo").into_command();
    command
        .args(["--repository", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    // Close the reading end before the tool writes anything, as `tool | head -0` would.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..20 {
        writeln!(stdin, "{{\"n\":1}}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
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
