//! The context's unit tests: patterns, the walk, the tar stream and the hash.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn m(pattern: &str, path: &str) -> bool {
    Ignore::from_patterns(&[pattern])
        .expect("valid pattern")
        .matches_or_parent_matches(path)
        .excluded
}

#[test]
fn clean_matches_go() {
    let cases = [
        ("", "."),
        (".", "."),
        ("./", "."),
        ("a/./b", "a/b"),
        ("a//b/", "a/b"),
        ("a/../b", "b"),
        ("../a", "../a"),
        ("a/../..", ".."),
        ("/../a", "/a"),
        ("/", "/"),
        ("//a", "/a"),
        ("a/b/../../..", ".."),
        ("**/", "**"),
    ];
    for (input, want) in cases {
        assert_eq!(clean(input), want, "clean({input:?})");
    }
}

#[test]
fn read_ignore_normalises_like_the_cli() {
    let text = "\u{feff}# comment\r\n  # not a comment\n\n  foo/  \n!  bar/../baz\n/abs\n/\n./dot\n!\n#x\r\nlast\r";
    let got: Vec<(usize, String)> = read_ignore(text)
        .into_iter()
        .map(|l| (l.number, l.pattern))
        .collect();
    let want = [
        (2, "# not a comment"),
        (4, "foo"),
        (5, "!baz"),
        (6, "abs"),
        (7, "/"),
        (8, "dot"),
        (9, "!"),
        (11, "last"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(n, p)| (*n, (*p).to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn patterns_match_as_moby_patternmatcher_does() {
    // (pattern, path, excluded) with parent matching (MatchesOrParentMatches).
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**/", "file", true),
        ("**", "dir/file", true),
        ("**/**", "dir/file", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir", false),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/g/file", true),
        ("**/dir2/*", "dir/dir2", false),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("**/foo/bar", "dir/foo/barx", false),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        // `**x` at the start is a plain suffix test: it also matches inside a name.
        ("**foo", "barfoo", true),
        ("**foo", "a/xfoo", true),
        ("**foo", "foox", false),
        // `x**` at the end is a plain prefix test.
        ("foo**", "foobar", true),
        ("foo**", "foo/bar", true),
        ("foo**", "fo", false),
        // Anchored at the root: a bare name is never matched deeper down.
        ("foo", "foo", true),
        ("foo", "foo/bar", true),
        ("foo", "a/foo", false),
        ("foo/bar", "foo/bar/baz", true),
        ("foo/bar", "x/foo/bar", false),
        // `*` and `?` never cross a slash.
        ("*.go", "main.go", true),
        ("*.go", "cmd/main.go", false),
        ("*/*.go", "cmd/main.go", true),
        ("*", "a/b", true),
        ("?", "a", true),
        ("?", "ab", false),
        ("a?c", "a/c", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        // Character classes and ranges.
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[b-d]e", "ae", false),
        ("a[^b-d]e", "aze", true),
        ("a[^b-d]e", "ace", false),
        ("[abc]", "b", true),
        ("[abc]", "d", false),
        ("a[\\]]b", "a]b", true),
        // Escapes.
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("a\\?b", "a?b", true),
        ("a\\?b", "axb", false),
        ("a\\\\", "a\\", true),
        ("\\[x\\]", "[x]", true),
        // Regular-expression characters are literal.
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        ("a+b", "aab", false),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // Non-ASCII names.
        ("dé*", "déjà", true),
        ("?à", "jà", true),
    ];
    for &(pattern, path, want) in cases {
        assert_eq!(m(pattern, path), want, "pattern {pattern:?} on {path:?}");
    }
}

#[test]
fn bad_patterns_are_data_errors() {
    for pattern in ["[", "a[", "[]", "[]a]", "[-a]", "[z-a]", "a\\", "[a\\", "!"] {
        let err = Ignore::from_patterns(&[pattern]).expect_err(pattern);
        assert_eq!(err.code(), shared::exit::DATA, "{pattern}");
    }
    let err = Ignore::parse("ok\n[bad\n").expect_err("line 2");
    assert!(err.message().contains("line 2"), "{}", err.message());
}

/// Full rule sets, judged the way the walk judges them (the path replayed from the root).
#[test]
fn rule_sets_decide_as_the_cli_walk_does() {
    // (rules, path, excluded, deciding rule text)
    let cases: &[(&str, &str, bool, Option<&str>)] = &[
        ("*\n!keep", "keep", false, Some("!keep")),
        ("*\n!keep", "other", true, Some("*")),
        ("*\n!keep", "keep/inner", false, Some("!keep")),
        // The last matching rule wins.
        ("!a\na", "a", true, Some("a")),
        ("a\n!a", "a", false, Some("!a")),
        (
            "*.md\n!README.md\nREADME.md",
            "README.md",
            true,
            Some("README.md"),
        ),
        // An excluded parent, a re-included child: the walk enters the directory.
        (
            "docs\n!docs/keep.md",
            "docs/keep.md",
            false,
            Some("!docs/keep.md"),
        ),
        ("docs\n!docs/keep.md", "docs/other.md", true, Some("docs")),
        ("docs\n!docs/keep.md", "docs", true, Some("docs")),
        // ... but only when an exception starts with the directory's path: `!**/x` does
        // not make the CLI enter an excluded directory.
        ("docs\n!**/keep.md", "docs/keep.md", true, Some("docs")),
        ("docs\n!**/keep.md", "keep.md", false, None),
        // Deeper: the exception names a path two levels down.
        ("a\n!a/b/c", "a/b/c", false, Some("!a/b/c")),
        ("a\n!a/b/c", "a/b/d", true, Some("a")),
        // A leading slash is ignored; `**` reaches any depth.
        ("/build", "build/x", true, Some("build")),
        (
            "**/*.log\n!important.log",
            "x/y/z.log",
            true,
            Some("**/*.log"),
        ),
        (
            "**/*.log\n!important.log",
            "important.log",
            false,
            Some("!important.log"),
        ),
        (
            "**/node_modules",
            "web/node_modules/x/y",
            true,
            Some("**/node_modules"),
        ),
        // Comments and blank lines are not rules.
        ("# *\n\n", "anything", false, None),
    ];
    for &(rules, path, excluded, rule) in cases {
        let ignore = Ignore::parse(rules).expect("valid rules");
        let got = ignore.explain(path);
        assert_eq!(got.excluded, excluded, "rules {rules:?} on {path:?}: {got}");
        assert_eq!(
            got.rule.as_ref().map(|r| r.text.as_str()),
            rule,
            "rules {rules:?} on {path:?}: {got}"
        );
    }
}

#[test]
fn walk_results_differ_from_parent_matching_where_moby_s_do() {
    // moby's walk keeps per-rule parent results: a rule skipped for the parent is not
    // counted for the child. Here `!a` matches only the parent, so the walk excludes a/c
    // while MatchesOrParentMatches keeps it. The CLI's tar follows the walk.
    let ignore = Ignore::parse("a/c\n!a").expect("rules");
    assert!(!ignore.matches_or_parent_matches("a/c").excluded);
    assert!(ignore.explain("a/c").excluded);
}

#[test]
fn explanation_reads_as_a_sentence() {
    let ignore = Ignore::parse("docs\n!**/keep.md").expect("rules");
    let text = ignore.explain("docs/keep.md").to_string();
    assert_eq!(
        text,
        "docs/keep.md: excluded by \"docs\" (.dockerignore:1), which excludes its directory docs/ with no exception under it"
    );
    assert_eq!(
        ignore.explain("src/main.rs").to_string(),
        "src/main.rs: sent (no rule matches)"
    );
}

// ------------------------------------------------------------------------------------------
// The context on disk.

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n");
    write(
        &root.join(".dockerignore"),
        "# rules\n*.log\n!keep.log\ndocs\n!docs/keep.md\n**/cache\n/secret\nDockerfile\n.dockerignore\n",
    );
    write(&root.join("a.log"), "x");
    write(&root.join("keep.log"), "keep");
    write(&root.join("docs/keep.md"), "keep");
    write(&root.join("docs/drop.md"), "drop");
    write(&root.join("src/main.rs"), "fn main() {}\n");
    write(&root.join("src/cache/blob"), "cached");
    write(&root.join("src/b.log"), "not anchored");
    write(&root.join("secret"), "s");
    write(&root.join("src/z/secret"), "deep");
    std::os::unix::fs::symlink("../secret", root.join("src/link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent", root.join("dangling")).expect("symlink");
    fs::hard_link(root.join("src/main.rs"), root.join("src/main2.rs")).expect("hard link");
    fs::set_permissions(root.join("src/main.rs"), fs::Permissions::from_mode(0o4751))
        .expect("chmod");
    dir
}

/// The entries of the tar body.
fn names(ctx: &Context) -> Vec<(String, Kind, u32)> {
    let mut out = Vec::new();
    ctx.walk(|e| {
        if e.role.in_tar() {
            out.push((e.name.clone(), e.kind.clone(), e.mode));
        }
        Ok(())
    })
    .expect("walk");
    out
}

/// The names file sync sends.
fn session_names(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    ctx.walk(|e| {
        if e.role.in_session() {
            out.push(e.name.clone());
        }
        Ok(())
    })
    .expect("walk");
    out
}

#[test]
fn walk_sends_what_the_cli_sends_in_its_order() {
    let dir = fixture();
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    let got: Vec<String> = names(&ctx).into_iter().map(|e| e.0).collect();
    assert_eq!(
        got,
        [
            ".dockerignore",
            "Dockerfile",
            "dangling",
            "docs/keep.md",
            "keep.log",
            "src",
            "src/b.log",
            "src/link",
            "src/main.rs",
            "src/main2.rs",
            "src/z",
            "src/z/secret",
        ]
    );
    let entries = names(&ctx);
    let find = |n: &str| entries.iter().find(|e| e.0 == n).expect(n).clone();
    assert_eq!(
        find("src/link").1,
        Kind::Symlink(PathBuf::from("../secret"))
    );
    assert_eq!(
        find("src/main2.rs").1,
        Kind::HardLink("src/main.rs".to_owned())
    );
    assert_eq!(find("src/main.rs").2, 0o4751);
    assert_eq!(ctx.dockerfile_name(), "Dockerfile");
    // The client's additions are visible as rules.
    let added: Vec<&str> = ctx
        .ignore()
        .rules()
        .iter()
        .filter(|r| r.origin == Origin::Added)
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(added, ["!.dockerignore", "!Dockerfile"]);
    // File sync sends neither (the patterns name both), and does send the excluded directory
    // that holds a re-included file.
    assert_eq!(
        session_names(&ctx),
        [
            "dangling",
            "docs",
            "docs/keep.md",
            "keep.log",
            "src",
            "src/b.log",
            "src/link",
            "src/main.rs",
            "src/main2.rs",
            "src/z",
            "src/z/secret",
        ]
    );
}

#[test]
fn session_times_are_fixed_seconds_that_change_with_the_file() {
    let dir = fixture();
    let open = || Context::open(dir.path(), None, Options { mtime: Some(1234) }).expect("open");
    let time_of = |ctx: &Context, name: &str| {
        let mut found = None;
        ctx.walk(|e| {
            if e.name == name {
                found = Some(ctx.session_mtime_ns(e));
            }
            Ok(())
        })
        .expect("walk");
        found.expect(name)
    };
    let before = time_of(&open(), "keep.log");
    assert_eq!(
        before / 1_000_000_000,
        1234,
        "whole seconds are the fixed time"
    );
    assert_eq!(
        time_of(&open(), "keep.log"),
        before,
        "stable while unchanged"
    );
    assert_eq!(time_of(&open(), "src"), 1234 * 1_000_000_000);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&dir.path().join("keep.log"), "KEEP");
    let after = time_of(&open(), "keep.log");
    assert_eq!(after / 1_000_000_000, 1234);
    assert_ne!(after, before, "a rewrite of the same size is a new time");
    // Kept times are the file's own.
    let kept = Context::open(dir.path(), None, Options { mtime: None }).expect("open");
    let real = fs::metadata(dir.path().join("keep.log")).expect("meta");
    let real_ns = {
        use std::os::unix::fs::MetadataExt;
        real.mtime() * 1_000_000_000 + real.mtime_nsec()
    };
    assert_eq!(time_of(&kept, "keep.log"), real_ns);
}

#[test]
fn tar_holds_the_walk_with_root_owners_and_fixed_times() {
    let dir = fixture();
    let ctx = Context::open(dir.path(), None, Options { mtime: Some(1234) }).expect("open");
    let mut bytes = Vec::new();
    let summary = ctx.write_tar(&mut bytes).expect("tar");
    assert_eq!(summary, ctx.hash().expect("hash"));
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        assert_eq!(header.uid().expect("uid"), 0);
        assert_eq!(header.gid().expect("gid"), 0);
        assert_eq!(header.mtime().expect("mtime"), 1234);
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut content = String::new();
        if header.entry_type() == tar::EntryType::Regular {
            entry.read_to_string(&mut content).expect("read");
        }
        seen.push((
            name,
            header.entry_type(),
            header.mode().expect("mode"),
            content,
        ));
    }
    let want: Vec<String> = names(&ctx).into_iter().map(|e| e.0).collect();
    let got: Vec<String> = seen
        .iter()
        .map(|e| e.0.trim_end_matches('/').to_owned())
        .collect();
    assert_eq!(got, want);
    let main = seen.iter().find(|e| e.0 == "src/main.rs").expect("main");
    assert_eq!((main.2, main.3.as_str()), (0o4751, "fn main() {}\n"));
    let link = seen
        .iter()
        .find(|e| e.0 == "src/main2.rs")
        .expect("hard link");
    assert_eq!(link.1, tar::EntryType::Link);
    // The summary describes what the build sees: not the .dockerignore and Dockerfile that the
    // tar carries only for the daemon to read.
    let sent = [
        "docs/keep.md",
        "keep.log",
        "src/b.log",
        "src/main.rs",
        "src/z/secret",
    ];
    assert_eq!(summary.files, sent.len() as u64);
    let bytes: u64 = sent
        .iter()
        .map(|n| fs::metadata(dir.path().join(n)).expect("meta").len())
        .sum();
    assert_eq!(summary.bytes, bytes);
}

#[test]
fn same_tree_same_bytes_and_hash_whatever_the_times() {
    let dir = fixture();
    let open = || Context::open(dir.path(), None, Options { mtime: Some(0) }).expect("open");
    let mut first = Vec::new();
    let one = open().write_tar(&mut first).expect("tar");
    let file = fs::File::options()
        .write(true)
        .open(dir.path().join("keep.log"))
        .expect("open");
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(99))
        .expect("touch");
    let mut second = Vec::new();
    let two = open().write_tar(&mut second).expect("tar");
    assert_eq!(one, two);
    assert_eq!(first, second);
    // Contents, modes, names and excluded files each move the hash as they should.
    fs::set_permissions(
        dir.path().join("keep.log"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let three = open().hash().expect("hash");
    assert_ne!(three.hash, two.hash);
    write(&dir.path().join("docs/drop.md"), "changed but excluded");
    assert_eq!(open().hash().expect("hash").hash, three.hash);
    write(&dir.path().join("keep.log"), "changed");
    assert_ne!(open().hash().expect("hash").hash, three.hash);
}

#[test]
fn dockerfile_outside_the_context_is_injected_as_the_cli_does() {
    let outer = tempfile::tempdir().expect("tempdir");
    let ctx_dir = outer.path().join("ctx");
    write(&ctx_dir.join("app.txt"), "app");
    write(&outer.path().join("build/Dockerfile"), "FROM scratch\n");
    let ctx = Context::open(
        &ctx_dir,
        Some(&outer.path().join("build/Dockerfile")),
        Options::default(),
    )
    .expect("open");
    let name = ctx.dockerfile_name().to_owned();
    assert!(name.starts_with(".dockerfile.") && name.len() == ".dockerfile.".len() + 20);
    let mut bytes = Vec::new();
    ctx.write_tar(&mut bytes).expect("tar");
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut got = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        got.push((path, entry.header().mode().expect("mode"), text));
    }
    assert_eq!(
        got,
        [
            ("app.txt".to_owned(), 0o644, "app".to_owned()),
            (name.clone(), 0o600, "FROM scratch\n".to_owned()),
            (
                ".dockerignore".to_owned(),
                0o600,
                format!(".dockerignore\n{name}\n")
            ),
        ]
    );
    // With a .dockerignore of its own, the name is appended to it in place.
    write(&ctx_dir.join(".dockerignore"), "*.tmp");
    let ctx = Context::open(
        &ctx_dir,
        Some(&outer.path().join("build/Dockerfile")),
        Options::default(),
    )
    .expect("open");
    let mut bytes = Vec::new();
    ctx.write_tar(&mut bytes).expect("tar");
    let mut archive = tar::Archive::new(bytes.as_slice());
    let first = archive
        .entries()
        .expect("entries")
        .next()
        .expect("one")
        .expect("entry");
    let mut first = first;
    let mut text = String::new();
    first.read_to_string(&mut text).expect("read");
    assert_eq!(text, format!("*.tmp\n{name}\n"));
}

#[test]
fn excluded_dockerfile_in_an_excluded_directory_is_still_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("build/Dockerfile"), "FROM scratch\n");
    write(&dir.path().join("build/other"), "x");
    write(&dir.path().join(".dockerignore"), "build\n");
    let df = dir.path().join("build/Dockerfile");
    let ctx = Context::open(dir.path(), Some(&df), Options::default()).expect("open");
    let got: Vec<String> = names(&ctx).into_iter().map(|e| e.0).collect();
    assert_eq!(got, [".dockerignore", "build/Dockerfile"]);
    assert_eq!(ctx.dockerfile_name(), "build/Dockerfile");
}

#[test]
fn missing_dockerfile_and_context_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Context::open(dir.path(), None, Options::default()).expect_err("no Dockerfile");
    assert!(
        err.to_string().contains("cannot locate the Dockerfile"),
        "{err}"
    );
    let err =
        Context::open(&dir.path().join("nope"), None, Options::default()).expect_err("no context");
    assert!(
        err.to_string().contains("opening the build context"),
        "{err}"
    );
    // The lower-case name is found when Dockerfile is missing, as the CLI does.
    write(&dir.path().join("dockerfile"), "FROM scratch\n");
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    assert_eq!(ctx.dockerfile_name(), "dockerfile");
}

#[test]
fn explain_reports_sizes_largest_files_and_warnings() {
    let dir = fixture();
    write(
        &dir.path().join("node_modules/pkg/index.js"),
        &"x".repeat(1000),
    );
    write(&dir.path().join(".git/HEAD"), "ref: refs/heads/main\n");
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    let report = ctx.explain(2).expect("explain");
    assert_eq!(
        report.largest[0],
        ("node_modules/pkg/index.js".to_owned(), 1000)
    );
    assert_eq!(report.largest.len(), 2);
    assert_eq!(report.dirs[0].dir, "node_modules/");
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.starts_with(".git ")));
    let hashed = ctx.hash().expect("hash");
    assert_eq!((report.files, report.bytes), (hashed.files, hashed.bytes));
}

#[test]
fn the_hash_cache_gives_the_same_hash_and_never_hides_a_change() {
    let dir = fixture();
    let caches = tempfile::tempdir().expect("tempdir");
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    let root = ctx.root().to_owned();
    // Far in the future: every file is old enough to be cached.
    let later = i64::MAX / 2;
    let cold = ctx
        .hash_with(HashCache::open_in(caches.path(), &root, later))
        .expect("hash");
    assert_eq!(cold, ctx.hash_with(HashCache::default()).expect("uncached"));
    assert_eq!(fs::read_dir(caches.path()).expect("cache dir").count(), 1);
    let warm = ctx
        .hash_with(HashCache::open_in(caches.path(), &root, later))
        .expect("hash");
    assert_eq!(warm, cold, "the cached digests give the same hash");
    // Same size, new bytes: the stamp changes, so the cache cannot answer for it.
    write(&dir.path().join("keep.log"), "KEEP");
    let changed = ctx
        .hash_with(HashCache::open_in(caches.path(), &root, later))
        .expect("hash");
    assert_ne!(changed.hash, cold.hash);
    assert_eq!(
        changed,
        ctx.hash_with(HashCache::default()).expect("uncached")
    );
    // Files changed within the last seconds are not stored (a racy write could keep the stamp).
    let fresh = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .cast_signed();
    ctx.hash_with(HashCache::open_in(fresh.path(), &root, now))
        .expect("hash");
    let stored: u64 = fs::read_dir(fresh.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(stored <= 8, "only the header: {stored} bytes");
    // A malformed cache is ignored.
    for entry in fs::read_dir(caches.path()).expect("cache dir") {
        fs::write(entry.expect("entry").path(), b"imgpctx1garbage").expect("write");
    }
    assert_eq!(
        changed,
        ctx.hash_with(HashCache::open_in(caches.path(), &root, later))
            .expect("hash")
    );
}

#[test]
fn the_listing_is_what_file_sync_sends_and_can_be_read_while_the_hash_walks() {
    // Kept in memory, and written out to its temporary file every two entries.
    for spill_at in [usize::MAX, 2] {
        listing_replays_the_walk(spill_at);
    }
}

fn listing_replays_the_walk(spill_at: usize) {
    let dir = fixture();
    // A name that is not UTF-8: its number must still lead to its own bytes on disk.
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(dir.path().join(odd), "odd").expect("write");
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    let listing = Listing::spilling_at(ctx.root(), spill_at);
    // The reader starts first, so it waits for entries the walk has not reached yet.
    let reader = {
        let listing = listing.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            listing
                .replay(
                    |id, entry| {
                        seen.push((id, entry.name.clone()));
                        Ok(())
                    },
                    || Ok(()),
                )
                .map(|()| seen)
        })
    };
    let summary = ctx.hash_into(&listing).expect("hash");
    let seen = reader.join().expect("reader").expect("replay");
    let want: Vec<(u32, String)> = (0..).zip(session_names(&ctx)).collect();
    assert!(
        want.len() > 5,
        "the fixture sends several entries: {want:?}"
    );
    assert_eq!(seen, want);
    assert_eq!(
        summary,
        ctx.hash().expect("hash"),
        "the same hash as without a listing"
    );
    // A number stands for a file on disk, with the size the walk saw; not for a directory.
    let number = |name: &str| -> u32 {
        seen.iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
            .expect(name)
    };
    let file = |name: &str| {
        let file = listing.file(number(name)).expect("read");
        file.map(|f| (f.path, f.size))
    };
    assert_eq!(
        file("keep.log"),
        Some((ctx.root().join("keep.log"), Some(4)))
    );
    assert_eq!(
        file("caf\u{fffd}.txt"),
        Some((ctx.root().join(odd), Some(3)))
    );
    assert_eq!(file("src"), None);
    assert_eq!(listing.file(u32::MAX).expect("read"), None);
}

#[test]
fn a_failed_walk_ends_the_listing_with_its_error_after_what_it_recorded() {
    let dir = fixture();
    let ctx = Context::open(dir.path(), None, Options::default()).expect("open");
    let listing = Listing::new(ctx.root());
    let mut first = None;
    ctx.walk(|e| {
        if first.is_none() && e.role.in_session() {
            first = Some(e.clone());
        }
        Ok(())
    })
    .expect("walk");
    listing.push(&first.expect("an entry"));
    listing.finish(Some(&Error::data("keep.log changed while it was read")));
    // A later outcome does not replace the first.
    listing.finish(None);
    let mut visited = 0;
    let err = listing
        .replay(
            |_, _| {
                visited += 1;
                Ok(())
            },
            || Ok(()),
        )
        .expect_err("the walk failed");
    assert_eq!(visited, 1);
    assert!(
        err.message().contains("keep.log changed"),
        "{}",
        err.message()
    );
}
