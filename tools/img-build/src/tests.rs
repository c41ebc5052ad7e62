//! img-build's unit tests.

use crate::builder::BUILDKIT_MIN_API;
use crate::builder::Builder;
use crate::builder::api_version;
use crate::builder::choose;
use crate::request::build_args;
use crate::request::references;
use crate::request::registry_of;
use crate::request::split_reference;
use crate::skip::registry_repository;
use crate::stream::Progress;
use crate::stream::plain;
use serde_json::{Value, json};
use shared::Document;

#[test]
fn cache_images_name_their_registry_as_the_docker_cli_reads_it() {
    assert_eq!(registry_of("127.0.0.1:5001/app"), Some("127.0.0.1:5001"));
    assert_eq!(
        registry_of("1234.dkr.ecr.us-east-1.amazonaws.com/team/app"),
        Some("1234.dkr.ecr.us-east-1.amazonaws.com")
    );
    assert_eq!(registry_of("localhost/app"), Some("localhost"));
    assert_eq!(registry_of("team/app"), None);
    assert_eq!(registry_of("app"), None);
}

#[test]
fn the_content_tag_and_where_to_look_for_it() {
    let doc = |v: Value| Document::from_value(v, "test").expect("document");
    let cases = [
        (
            json!({"registry": "r.example", "repository": "a/b", "references": ["x.example/c:1"]}),
            Some(("r.example", "a/b")),
        ),
        (
            json!({"references": ["127.0.0.1:5000/team/app:1"]}),
            Some(("127.0.0.1:5000", "team/app")),
        ),
        (json!({"references": ["team/app:1"]}), None),
        (json!({"repository": "app"}), None),
    ];
    for (value, want) in cases {
        let got = registry_repository(&doc(value.clone())).expect("valid names");
        assert_eq!(
            got.as_ref().map(|(r, p)| (r.as_str(), p.as_str())),
            want,
            "{value}"
        );
    }
    for hostile in [
        json!({"registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host", "repository": "app"}),
        json!({"references": ["123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host/app:1"]}),
        json!({"registry": "r.example", "repository": "../other"}),
    ] {
        let err = registry_repository(&doc(hostile.clone())).unwrap_err();
        assert_eq!(err.code(), shared::exit::DATA, "{hostile}");
    }
}

#[test]
fn references_come_from_the_document_then_flags() {
    let doc = |v: Value| Document::from_value(v, "test").expect("document");
    let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
        (
            json!({"references": ["r/app:1", "r/app:latest"], "tags": ["x"], "repository": "y"}),
            vec!["extra:1", "r/app:1"],
            vec!["r/app:1", "r/app:latest", "extra:1"],
        ),
        (
            json!({"registry": "127.0.0.1:5000", "repository": "team/app", "tags": ["1.2", "latest"]}),
            vec![],
            vec![
                "127.0.0.1:5000/team/app:1.2",
                "127.0.0.1:5000/team/app:latest",
            ],
        ),
        (
            json!({"repository": "app", "tags": ["dev"]}),
            vec![],
            vec!["app:dev"],
        ),
        (json!({}), vec!["only:flag"], vec!["only:flag"]),
        (json!({"repository": "app"}), vec![], vec![]),
    ];
    for (input, extra, want) in cases {
        let extra: Vec<String> = extra.into_iter().map(str::to_owned).collect();
        assert_eq!(references(&doc(input.clone()), &extra), want, "{input}");
    }
}

#[test]
fn references_split_into_repository_and_tag() {
    let cases = [
        ("app", ("app", "latest")),
        ("app:1", ("app", "1")),
        (
            "127.0.0.1:5000/team/app",
            ("127.0.0.1:5000/team/app", "latest"),
        ),
        (
            "127.0.0.1:5000/team/app:v1",
            ("127.0.0.1:5000/team/app", "v1"),
        ),
    ];
    for (input, (repo, tag)) in cases {
        assert_eq!(
            split_reference(input).expect("valid"),
            (repo.to_owned(), tag.to_owned()),
            "{input}"
        );
    }
    assert!(split_reference("app@sha256:abc").is_err());
}

#[test]
fn build_args_take_values_or_the_environment() {
    let env = |key: &str| (key == "FROM_ENV").then(|| "env value".to_owned());
    let args: Vec<String> = ["A=1", "B=", "C=x=y", "FROM_ENV", "UNSET"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let got = build_args(&args, env).expect("valid");
    let mut got: Vec<(String, String)> = got.into_iter().collect();
    got.sort();
    let want = [
        ("A", "1"),
        ("B", ""),
        ("C", "x=y"),
        ("FROM_ENV", "env value"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(got, want);
    assert!(build_args(&["=x".to_owned()], env).is_err());
}

#[test]
fn progress_tracks_steps_cache_and_last_lines() {
    let mut p = Progress::default();
    let mut lines = p.feed("Step 1/3 : FROM local/busybox:1\n ---> 3d2e\nStep 2/3 : RUN ec");
    lines.extend(p.feed("ho hi\n ---> Using cache\n ---> abc\nStep 3/3 : RUN false\n"));
    lines.extend(p.feed("\u{1b}[31mboom\u{1b}[0m\nprogress 10%\rprogress 100%\n"));
    assert_eq!(p.steps, 3);
    assert_eq!(p.cached, 1);
    assert_eq!(p.step.as_deref(), Some("Step 3/3 : RUN false"));
    assert_eq!(Vec::from(p.last.clone()), ["boom", "progress 100%"]);
    assert_eq!(
        lines[2], "Step 2/3 : RUN echo hi",
        "a step split across chunks is one line"
    );
    assert_eq!(p.finish(), None);
}

#[test]
fn plain_drops_control_sequences() {
    let cases = [
        ("plain", "plain"),
        ("\u{1b}[1;32mgreen\u{1b}[0m", "green"),
        ("a\rb", "b"),
        ("50%\r100%\r", "100%"),
        ("tab\tkept\u{7}", "tab\tkept"),
    ];
    for (input, want) in cases {
        assert_eq!(plain(input), want, "{input:?}");
    }
}

#[test]
fn api_versions_parse() {
    assert_eq!(api_version("1.41"), Some((1, 41)));
    assert_eq!(api_version(" 1.39 "), Some((1, 39)));
    assert_eq!(api_version("2"), None);
    assert_eq!(api_version("x.1"), None);
    assert!(api_version("1.41").expect("valid") >= BUILDKIT_MIN_API);
    assert!(api_version("1.38").expect("valid") < BUILDKIT_MIN_API);
}

#[test]
fn the_builder_follows_the_flag_the_environment_and_the_daemon() {
    use Builder::{Auto, Buildkit, Classic};
    // The flag, DOCKER_BUILDKIT, whether the daemon offers BuildKit; the builder and
    // whether a note is shown, or an error.
    type Case = (
        Builder,
        Option<&'static str>,
        bool,
        std::result::Result<(Builder, bool), ()>,
    );
    let yes = || Ok(());
    let no = || Err("no BuildKit here".to_owned());
    let cases: Vec<Case> = vec![
        (Auto, None, true, Ok((Buildkit, false))),
        (Auto, None, false, Ok((Classic, true))),
        (Auto, Some("0"), true, Ok((Classic, false))),
        (Auto, Some("false"), true, Ok((Classic, false))),
        (Auto, Some("1"), true, Ok((Buildkit, false))),
        (Auto, Some("1"), false, Err(())),
        (Auto, Some(""), false, Ok((Classic, true))),
        (Buildkit, None, true, Ok((Buildkit, false))),
        (Buildkit, Some("0"), true, Ok((Buildkit, false))),
        (Buildkit, None, false, Err(())),
        (Classic, Some("1"), true, Ok((Classic, false))),
        (Classic, None, false, Ok((Classic, false))),
    ];
    for (flag, env, daemon, want) in cases {
        let got = choose(flag, env, if daemon { yes() } else { no() })
            .map(|(builder, note)| (builder, note.is_some()))
            .map_err(|_| ());
        assert_eq!(got, want, "{flag:?} {env:?} {daemon}");
    }
}
