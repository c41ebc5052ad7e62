//! The Docker build context exactly as the docker CLI sends it: which files, in which order, with
//! which headers, streamed as a tar without holding the context in memory; and a content hash of
//! the same file set, so `img-tag` can name an unchanged tree with the same tag `img-build` sends.
//!
//! Docker's `.dockerignore` is not gitignore. What this module reproduces, from the docker CLI's
//! `cli/command/image/build.go` and `build/context.go`, moby's `patternmatcher` (and its
//! `ignorefile.ReadAll`) and the archive package's `TarWithOptions`:
//!
//! - Reading the file: a UTF-8 BOM is dropped; lines starting with `#` are comments; lines are
//!   trimmed; a leading `!` makes an exception; the rest is cleaned like Go's `filepath.Clean`
//!   and one leading `/` removed, so every pattern is anchored at the context root (`foo` is only
//!   `./foo`, never `a/foo`; write `**/foo` for that).
//! - Matching: Go `filepath.Match` syntax (`*` and `?` never cross `/`, `[a-z]`, `[^a-z]`, `\`
//!   escapes) plus `**` for any number of directories; the last rule that matches wins; a path is
//!   excluded when it or one of its parents matches.
//! - The walk: directories in byte order of their names, each before its contents. An excluded
//!   directory is skipped, unless an exception pattern starts with the directory's path (the
//!   CLI's literal prefix test: `!dir/keep` re-enters `dir`, `!**/keep` does not); then the
//!   directory itself is not sent but the files re-included under it are.
//! - The Dockerfile and `.dockerignore` are always sent (the CLI appends `!Dockerfile` and
//!   `!.dockerignore` when the patterns would exclude them). A Dockerfile outside the context is
//!   added as `.dockerfile.<20 hex>` (mode 0600) and that name appended to `.dockerignore`, so the
//!   daemon removes it again after reading it. The CLI picks a random name; here it comes from
//!   the Dockerfile's own hash, so the same inputs give the same bytes.
//! - Headers: symlinks are stored (never followed), hard links stored as links to the first path
//!   sent, the permission bits (with setuid/setgid/sticky) kept, uid and gid 0, no user names.
//!   Sockets are skipped, as the CLI does. Modification times are fixed (see [`Options::mtime`]),
//!   so the same tree gives the same tar bytes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use shared::error::{Error, Result};
use shared::files;

/// The `.dockerignore` file name, at the context root.
pub const IGNORE_FILE: &str = ".dockerignore";

/// 1980-01-01T00:00:00Z: the modification time given to every entry unless `SOURCE_DATE_EPOCH`
/// says otherwise. Not 0: zip-based tools (Python wheels, jar) reject times before 1980.
pub const DEFAULT_MTIME: u64 = 315_532_800;

// ------------------------------------------------------------------------------------------------
// Go's filepath.Clean, for patterns.

/// Go's `filepath.Clean` on a slash-separated path: one `/` between elements, no `.` elements,
/// `..` folded into the element before it, `.` for an empty result, no trailing `/`.
#[must_use]
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

// ------------------------------------------------------------------------------------------------
// The .dockerignore file.

/// One pattern line of a `.dockerignore` file, as the CLI's `ReadAll` normalises it, with the
/// line it came from (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line number in the file.
    pub number: usize,
    /// The normalised pattern (`!` kept in front of an exception).
    pub pattern: String,
}

/// Reads `.dockerignore` text the way the docker CLI does (moby `ignorefile.ReadAll`).
#[must_use]
pub fn read_ignore(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.split('\n').enumerate() {
        // bufio.ScanLines drops one trailing carriage return.
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.starts_with('#') {
            continue;
        }
        let mut pattern = raw.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut pattern = if pattern.is_empty() {
            String::new()
        } else {
            let cleaned = clean(pattern);
            match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_owned(),
                _ => cleaned,
            }
        };
        if invert {
            pattern.insert(0, '!');
        }
        out.push(Line {
            number: index + 1,
            pattern,
        });
    }
    out
}

/// Where a rule came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of `.dockerignore`.
    Line(usize),
    /// Added by the client, as the CLI adds `!Dockerfile` and `!.dockerignore`.
    Added,
}

#[derive(Clone, Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(regex::Regex),
}

/// One compiled `.dockerignore` rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The pattern as written after normalisation, with its `!` if an exception.
    pub text: String,
    /// The cleaned pattern without `!`.
    pub pattern: String,
    /// Whether this is an exception (`!pattern`): it re-includes what it matches.
    pub exclusion: bool,
    /// Where the rule came from.
    pub origin: Origin,
    matcher: Matcher,
}

impl Rule {
    fn new(text: &str, origin: Origin) -> Result<Option<Self>> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let cleaned = clean(trimmed);
        let (exclusion, pattern) = match cleaned.strip_prefix('!') {
            Some("") => {
                return Err(bad_pattern(
                    text,
                    &origin,
                    "illegal exclusion pattern \"!\"",
                ));
            }
            Some(rest) => (true, rest.to_owned()),
            None => (false, cleaned.clone()),
        };
        validate_glob(&pattern).map_err(|why| bad_pattern(text, &origin, why))?;
        let matcher = compile(&pattern).map_err(|why| bad_pattern(text, &origin, &why))?;
        Ok(Some(Self {
            text: cleaned,
            pattern,
            exclusion,
            origin,
            matcher,
        }))
    }

    /// Whether the pattern matches `path` itself (a slash-separated path relative to the root).
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        let mut end = 0;
        while let Some(pos) = path[end..].find('/') {
            end += pos;
            if self.matches(&path[..end]) {
                return true;
            }
            end += 1;
        }
        false
    }

    /// Where the rule came from, for messages: `.dockerignore:3` or `added by the client`.
    #[must_use]
    pub fn location(&self) -> String {
        match self.origin {
            Origin::Line(n) => format!("{IGNORE_FILE}:{n}"),
            Origin::Added => "added by the client".to_owned(),
        }
    }
}

fn bad_pattern(text: &str, origin: &Origin, why: &str) -> Error {
    let at = match origin {
        Origin::Line(n) => format!("{IGNORE_FILE} line {n}"),
        Origin::Added => "pattern".to_owned(),
    };
    Error::data(format!("{at}: bad pattern {text:?}: {why}")).with_hint(
        "patterns use Go filepath.Match syntax plus **; close every [ and do not end with \\",
    )
}

/// The syntax check Go's `filepath.Match(pattern, ".")` does, which the CLI runs on every pattern.
fn validate_glob(pattern: &str) -> std::result::Result<(), &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("a trailing \\ escapes nothing");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    match chars.get(i) {
                        Some(']') if ranges > 0 => {
                            i += 1;
                            break;
                        }
                        None => return Err("a [ is never closed"),
                        _ => {}
                    }
                    let lo = class_char(&chars, &mut i)?;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        let hi = class_char(&chars, &mut i)?;
                        if hi < lo {
                            return Err("a character range runs backwards");
                        }
                    }
                    ranges += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn class_char(chars: &[char], i: &mut usize) -> std::result::Result<char, &'static str> {
    match chars.get(*i) {
        None => Err("a [ is never closed"),
        Some('-' | ']') => Err("a character class has an empty or misplaced range"),
        Some('\\') => {
            *i += 1;
            let c = *chars.get(*i).ok_or("a trailing \\ escapes nothing")?;
            *i += 1;
            Ok(c)
        }
        Some(c) => {
            *i += 1;
            Ok(*c)
        }
    }
}

/// Compiles a cleaned pattern as moby's patternmatcher does: plain names compare exactly, `x**`
/// is a prefix, `**x` a suffix, everything else a regular expression built character by
/// character (the same expression text, compiled by an RE2-compatible engine).
fn compile(pattern: &str) -> std::result::Result<Matcher, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut step = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if step == 0 {
                    kind = Kind::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = Kind::Regex;
        } else if ".+()|{}$".contains(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            if let Some(&next) = chars.get(i) {
                i += 1;
                re.push('\\');
                re.push(next);
                kind = Kind::Regex;
            } else {
                re.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = Kind::Regex;
        } else {
            re.push(ch);
        }
        step += 1;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact(pattern.to_owned()),
        Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Kind::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
        Kind::Regex => {
            re.push('$');
            Matcher::Regex(regex::Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// What the rules said about one path, passed down to its children as the walk descends
/// (moby's `MatchInfo`: which rules matched the path or a parent).
#[derive(Clone, Debug, Default)]
pub struct MatchInfo {
    matched: Vec<bool>,
}

/// The verdict on one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the path is excluded.
    pub excluded: bool,
    /// The index of the last rule that matched (the one that decided), if any did.
    pub rule: Option<usize>,
}

/// The compiled rules of a `.dockerignore`, in order.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Compiles `.dockerignore` text (see [`read_ignore`]).
    pub fn parse(text: &str) -> Result<Self> {
        let mut rules = Vec::new();
        for line in read_ignore(text) {
            if let Some(rule) = Rule::new(&line.pattern, Origin::Line(line.number))? {
                rules.push(rule);
            }
        }
        Ok(Self { rules })
    }

    /// Compiles patterns already in `ReadAll`'s form (moby `patternmatcher.New`).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut ignore = Self::default();
        for p in patterns {
            ignore.push(p.as_ref(), Origin::Added)?;
        }
        Ok(ignore)
    }

    fn push(&mut self, pattern: &str, origin: Origin) -> Result<()> {
        if let Some(rule) = Rule::new(pattern, origin)? {
            self.rules.push(rule);
        }
        Ok(())
    }

    /// The rules, in order.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule is an exception (`!...`).
    #[must_use]
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exclusion)
    }

    /// Whether `path` is excluded, judging the path and each of its parents against every rule
    /// (moby `MatchesOrParentMatches`). `path` is slash-separated, relative to the context root.
    #[must_use]
    pub fn matches_or_parent_matches(&self, path: &str) -> Verdict {
        let path = clean(path);
        let mut verdict = Verdict {
            excluded: false,
            rule: None,
        };
        if path == "." {
            return verdict;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.exclusion != verdict.excluded {
                continue;
            }
            if rule.matches_or_parent(&path) {
                verdict = Verdict {
                    excluded: !rule.exclusion,
                    rule: Some(i),
                };
            }
        }
        verdict
    }

    /// The walk's test (moby `MatchesUsingParentResults`): a rule that matched the parent
    /// directory counts as matching without a new test; without parent results, parents are
    /// tested as in [`Ignore::matches_or_parent_matches`]. Returns what the children inherit.
    #[must_use]
    pub fn matches_using_parent(
        &self,
        path: &str,
        parent: Option<&MatchInfo>,
    ) -> (Verdict, MatchInfo) {
        let mut info = MatchInfo {
            matched: vec![false; self.rules.len()],
        };
        let mut verdict = Verdict {
            excluded: false,
            rule: None,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.matched.get(i).copied().unwrap_or(false));
            if !hit {
                if rule.exclusion != verdict.excluded {
                    continue;
                }
                hit = if parent.is_some() {
                    rule.matches(path)
                } else {
                    rule.matches_or_parent(path)
                };
            }
            info.matched[i] = hit;
            if hit {
                verdict = Verdict {
                    excluded: !rule.exclusion,
                    rule: Some(i),
                };
            }
        }
        (verdict, info)
    }

    /// Whether the walk must enter excluded directory `dir`: some exception pattern starts with
    /// `dir/` (the CLI's literal test, which `!**/x` never passes).
    #[must_use]
    pub fn must_enter(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.rules
            .iter()
            .any(|r| r.exclusion && format!("{}/", r.pattern).starts_with(&dir_slash))
    }

    /// Explains the walk's decision for `path` (slash-separated, relative to the root, which need
    /// not exist): replays the walk from the root down to it.
    #[must_use]
    pub fn explain(&self, path: &str) -> Explanation {
        let path = clean(path.trim_start_matches('/'));
        let mut parent: Option<MatchInfo> = None;
        let mut so_far = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(part);
            let (verdict, info) = self.matches_using_parent(&so_far, parent.as_ref());
            let last = i + 1 == parts.len();
            if last {
                return Explanation {
                    path: path.clone(),
                    excluded: verdict.excluded,
                    rule: verdict.rule.map(|r| self.rules[r].clone()),
                    skipped_dir: None,
                };
            }
            if verdict.excluded && !(self.has_exceptions() && self.must_enter(&so_far)) {
                return Explanation {
                    path: path.clone(),
                    excluded: true,
                    rule: verdict.rule.map(|r| self.rules[r].clone()),
                    skipped_dir: Some(so_far),
                };
            }
            parent = Some(info);
        }
        Explanation {
            path,
            excluded: false,
            rule: None,
            skipped_dir: None,
        }
    }
}

/// Why a path is sent or not.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The path asked about, cleaned.
    pub path: String,
    /// Whether it is left out of the context.
    pub excluded: bool,
    /// The rule that decided (the last one that matched), if any matched.
    pub rule: Option<Rule>,
    /// When a parent directory was excluded and never entered: that directory.
    pub skipped_dir: Option<String>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.excluded { "excluded" } else { "sent" };
        write!(f, "{}: {verb}", self.path)?;
        if let Some(rule) = &self.rule {
            write!(f, " by {:?} ({})", rule.text, rule.location())?;
        } else if !self.excluded {
            write!(f, " (no rule matches)")?;
        }
        if let Some(dir) = &self.skipped_dir {
            write!(
                f,
                ", which excludes its directory {dir}/ with no exception under it"
            )?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// The context: where it is, its Dockerfile, its rules.

/// How to build the context.
#[derive(Clone, Debug)]
pub struct Options {
    /// The modification time written for every entry, in seconds since the epoch; `None` keeps
    /// each file's own time, as the docker CLI does.
    pub mtime: Option<u64>,
}

impl Default for Options {
    /// Fixed times: `SOURCE_DATE_EPOCH` when set to a number, else [`DEFAULT_MTIME`].
    fn default() -> Self {
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_MTIME);
        Self { mtime: Some(epoch) }
    }
}

/// Where the Dockerfile is.
#[derive(Clone, Debug)]
pub enum Dockerfile {
    /// Inside the context, at this slash-separated path.
    Inside(String),
    /// Outside the context: added to the tar under `name` with these contents.
    Outside {
        /// The file on disk.
        path: PathBuf,
        /// The name it gets in the context (`.dockerfile.<20 hex>`).
        name: String,
        /// Its contents.
        contents: Vec<u8>,
    },
}

/// A build context ready to walk, hash or stream.
#[derive(Clone, Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    ignore_text: Option<Vec<u8>>,
    dockerfile: Dockerfile,
    options: Options,
}

/// The kind of a context entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of this many bytes.
    File(u64),
    /// A symbolic link to this target (stored, not followed).
    Symlink(PathBuf),
    /// A hard link to the earlier entry of this name.
    HardLink(String),
    /// A named pipe.
    Fifo,
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
}

/// One entry of the context, in the order it is sent.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Slash-separated path relative to the root (lossy UTF-8 for display and matching).
    pub name: String,
    /// The same path with its exact bytes, for the tar header.
    pub rel: PathBuf,
    /// The file on disk (`None` for the injected Dockerfile).
    pub path: Option<PathBuf>,
    /// What it is.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Its own modification time (seconds), used only when times are kept.
    pub mtime: i64,
}

/// What was sent: counts, bytes and the content hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries of every kind (directories and links included).
    pub entries: u64,
    /// Regular files (hard links not counted twice).
    pub files: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// `sha256:<hex>` over names, kinds, modes, link targets and contents, in order; times,
    /// owners and the tar framing are not part of it.
    pub hash: String,
}

/// A Dockerfile or `.dockerignore` in the context that resolves to a file outside it: refused,
/// never read, because whoever wrote the context (a pull request) may point it at the
/// machine's secrets (`/proc/self/environ`).
fn link_out_of_context(path: &Path, resolved: &Path) -> Error {
    // Name the target as the link says it (`/proc/self/environ`), not as resolved.
    let target = fs::read_link(path).unwrap_or_else(|_| resolved.to_owned());
    Error::data(format!(
        "{} is a link to {}, outside the build context: refusing to read it",
        path.display(),
        target.display()
    ))
    .with_hint("replace the link with the file, or pass a path outside the context with --file")
}

/// Whether `path` is under `dir`, by their components alone (no links followed, `..` counted
/// as leaving).
fn lexically_within(path: &Path, dir: &Path) -> bool {
    use std::path::Component;
    path.strip_prefix(dir).is_ok_and(|rest| {
        rest.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    })
}

impl Context {
    /// Opens the context at `dir` with the Dockerfile at `dockerfile` (relative to the current
    /// directory, as `docker build -f` takes it; `None`: `Dockerfile`, else `dockerfile`, in the
    /// context), reads `.dockerignore` and adds the rules the CLI adds.
    pub fn open(dir: &Path, dockerfile: Option<&Path>, options: Options) -> Result<Self> {
        let root = fs::canonicalize(dir).map_err(|e| {
            Error::read_io(format!("opening the build context {}", dir.display()), &e)
                .with_hint("pass an existing directory as the context")
        })?;
        if !root.is_dir() {
            return Err(Error::data(format!(
                "the build context {} is not a directory",
                dir.display()
            ))
            .with_hint("pass a directory as the context"));
        }
        let (given, explicit) = if let Some(p) = dockerfile {
            let given = std::path::absolute(p).map_err(|e| {
                Error::read_io(format!("locating the Dockerfile {}", p.display()), &e)
            })?;
            // An explicit path names a file outside the context only when the path itself is
            // outside: `-f app/Dockerfile` that links out of the context is a link, not a choice.
            let lexically_outside =
                std::path::absolute(dir).map_or(true, |dir| !lexically_within(&given, &dir));
            (given, lexically_outside)
        } else {
            let upper = root.join("Dockerfile");
            let lower = root.join("dockerfile");
            let given =
                if fs::symlink_metadata(&upper).is_err() && fs::symlink_metadata(&lower).is_ok() {
                    lower
                } else {
                    upper
                };
            (given, false)
        };
        let resolved = fs::canonicalize(&given).map_err(|e| {
            Error::read_io(
                format!("cannot locate the Dockerfile {}", given.display()),
                &e,
            )
            .with_hint("pass --file PATH, or put a Dockerfile in the context directory")
        })?;
        if !explicit && !resolved.starts_with(&root) {
            return Err(link_out_of_context(&given, &resolved));
        }
        // The Dockerfile must be a regular file, inside the context as well: the daemon reads it.
        let dockerfile_text = files::read_regular(&resolved, files::TEXT_LIMIT, "Dockerfile")
            .map_err(|e| e.context(format!("the Dockerfile {}", given.display())))?;
        let ignore_path = root.join(IGNORE_FILE);
        if let Ok(target) = fs::canonicalize(&ignore_path)
            && !target.starts_with(&root)
        {
            return Err(link_out_of_context(&ignore_path, &target));
        }
        let ignore_text = files::read_if_exists(&ignore_path, files::TEXT_LIMIT, IGNORE_FILE)?;
        let mut ignore = match &ignore_text {
            Some(bytes) => Ignore::parse(&String::from_utf8_lossy(bytes))?,
            None => Ignore::default(),
        };
        let dockerfile = if let Ok(rel) = resolved.strip_prefix(&root) {
            Dockerfile::Inside(slash(rel))
        } else {
            let contents = dockerfile_text;
            let digest = hex(&Sha256::digest(&contents));
            Dockerfile::Outside {
                path: given,
                name: format!(".dockerfile.{}", &digest[..20]),
                contents,
            }
        };
        // The CLI's TrimBuildFilesFromExcludes: keep .dockerignore and the Dockerfile.
        if ignore.matches_or_parent_matches(IGNORE_FILE).excluded {
            ignore.push(&format!("!{IGNORE_FILE}"), Origin::Added)?;
        }
        let rel_dockerfile = match &dockerfile {
            Dockerfile::Inside(rel) => rel.clone(),
            Dockerfile::Outside { path, .. } => relative_outside(&root, path),
        };
        if ignore.matches_or_parent_matches(&rel_dockerfile).excluded {
            ignore.push(&format!("!{rel_dockerfile}"), Origin::Added)?;
        }
        Ok(Self {
            root,
            ignore,
            ignore_text,
            dockerfile,
            options,
        })
    }

    /// The context directory, resolved.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The rules in force, the client's additions included.
    #[must_use]
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Where the Dockerfile is.
    #[must_use]
    pub fn dockerfile(&self) -> &Dockerfile {
        &self.dockerfile
    }

    /// The Dockerfile's name inside the context: what the Engine API's `dockerfile` takes.
    #[must_use]
    pub fn dockerfile_name(&self) -> &str {
        match &self.dockerfile {
            Dockerfile::Inside(rel) => rel,
            Dockerfile::Outside { name, .. } => name,
        }
    }

    /// Visits every entry sent, in order. File contents are not read.
    pub fn walk(&self, mut visit: impl FnMut(&Entry) -> Result<()>) -> Result<()> {
        let mut links: HashMap<(u64, u64), String> = HashMap::new();
        self.walk_dir(&self.root, "", None, &mut links, &mut visit)?;
        for entry in self.injected() {
            visit(&entry)?;
        }
        Ok(())
    }

    fn walk_dir(
        &self,
        dir: &Path,
        prefix: &str,
        parent: Option<&MatchInfo>,
        links: &mut HashMap<(u64, u64), String>,
        visit: &mut dyn FnMut(&Entry) -> Result<()>,
    ) -> Result<()> {
        let reading =
            |e: &io::Error| Error::read_io(format!("reading directory {}", dir.display()), e);
        let mut names: Vec<OsString> = Vec::new();
        for item in fs::read_dir(dir).map_err(|e| reading(&e))? {
            names.push(item.map_err(|e| reading(&e))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for os_name in names {
            let path = dir.join(&os_name);
            let lossy = String::from_utf8_lossy(os_name.as_bytes());
            let name = if prefix.is_empty() {
                lossy.into_owned()
            } else {
                format!("{prefix}/{lossy}")
            };
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Gone between the listing and now: the CLI skips it too.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::read_io(format!("reading {}", path.display()), &e)),
            };
            let file_type = meta.file_type();
            let (verdict, info) = self.ignore.matches_using_parent(&name, parent);
            if verdict.excluded {
                if file_type.is_dir()
                    && self.ignore.has_exceptions()
                    && self.ignore.must_enter(&name)
                {
                    self.walk_dir(&path, &name, Some(&info), links, visit)?;
                }
                continue;
            }
            if is_injected_name(&self.dockerfile, &name) {
                // The CLI replaces an entry of the injected name; keep it out of the walk.
                continue;
            }
            let rel = rel_path(prefix, &os_name);
            let kind = if file_type.is_dir() {
                Kind::Dir
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| Error::read_io(format!("reading link {}", path.display()), &e))?;
                Kind::Symlink(target)
            } else if file_type.is_socket() {
                continue;
            } else if file_type.is_fifo() {
                Kind::Fifo
            } else if file_type.is_char_device() || file_type.is_block_device() {
                let (major, minor) = dev_numbers(meta.rdev());
                if file_type.is_char_device() {
                    Kind::CharDevice(major, minor)
                } else {
                    Kind::BlockDevice(major, minor)
                }
            } else {
                Kind::File(meta.len())
            };
            let kind = match kind {
                Kind::Dir => Kind::Dir,
                other if meta.nlink() > 1 => match links.entry((meta.dev(), meta.ino())) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        Kind::HardLink(first.get().clone())
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(name.clone());
                        other
                    }
                },
                other => other,
            };
            let entry = Entry {
                name: name.clone(),
                rel,
                path: Some(path.clone()),
                kind,
                mode: meta.mode() & 0o7777,
                mtime: meta.mtime(),
            };
            visit(&entry)?;
            if file_type.is_dir() {
                self.walk_dir(&path, &name, Some(&info), links, visit)?;
            }
        }
        Ok(())
    }

    /// The entries the client adds or changes at the end for a Dockerfile outside the context.
    fn injected(&self) -> Vec<Entry> {
        let Dockerfile::Outside { name, contents, .. } = &self.dockerfile else {
            return Vec::new();
        };
        let mut out = vec![Entry {
            name: name.clone(),
            rel: PathBuf::from(name),
            path: None,
            kind: Kind::File(contents.len() as u64),
            mode: 0o600,
            mtime: 0,
        }];
        if self.ignore_text.is_none() {
            out.push(Entry {
                name: IGNORE_FILE.to_owned(),
                rel: PathBuf::from(IGNORE_FILE),
                path: None,
                kind: Kind::File(self.ignore_contents().map_or(0, |c| c.len() as u64)),
                mode: 0o600,
                mtime: 0,
            });
        }
        out
    }

    /// The `.dockerignore` bytes sent, when the client changes them (Dockerfile outside).
    fn ignore_contents(&self) -> Option<Vec<u8>> {
        let Dockerfile::Outside { name, .. } = &self.dockerfile else {
            return None;
        };
        let mut text = self
            .ignore_text
            .clone()
            .unwrap_or_else(|| IGNORE_FILE.as_bytes().to_vec());
        text.extend_from_slice(format!("\n{name}\n").as_bytes());
        Some(text)
    }

    /// The bytes of an entry's content source: the injected ones from memory, the rest from disk.
    fn open_entry(&self, entry: &Entry) -> Result<Box<dyn Read + '_>> {
        if entry.name == IGNORE_FILE
            && let Some(text) = self.ignore_contents()
        {
            return Ok(Box::new(io::Cursor::new(text)));
        }
        match (&entry.path, &self.dockerfile) {
            (None, Dockerfile::Outside { contents, .. }) => {
                Ok(Box::new(io::Cursor::new(contents.as_slice())))
            }
            (Some(path), _) => {
                // Walked as a regular file; if it became something else since, it is refused
                // rather than read (a FIFO would hang the build).
                let file = files::open_regular(path, "context file")?;
                Ok(Box::new(file))
            }
            (None, Dockerfile::Inside(_)) => Err(Error::internal(format!(
                "no source for context entry {}",
                entry.name
            ))),
        }
    }

    /// Writes the context as a tar to `out`, streaming file contents, and returns what was sent
    /// with its content hash (the same as [`Context::hash`]).
    pub fn write_tar<W: Write>(&self, out: W) -> Result<Summary> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        let mut hasher = ContentHasher::new();
        let writing = |e: &io::Error| Error::write_io("writing the build context", e);
        self.walk(|entry| {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            let mtime = match self.options.mtime {
                Some(fixed) => fixed,
                None => u64::try_from(entry.mtime).unwrap_or(0),
            };
            header.set_mtime(mtime);
            hasher.begin(entry);
            match &entry.kind {
                Kind::File(_) => {
                    let mut source = self.open_entry(entry)?;
                    let size = self.content_len(entry);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    let mut reader = HashingReader {
                        inner: (&mut source).take(size),
                        hasher: &mut hasher,
                        read: 0,
                    };
                    builder
                        .append_data(&mut header, &entry.rel, &mut reader)
                        .map_err(|e| writing(&e))?;
                    if reader.read != size {
                        return Err(changed(entry));
                    }
                    hasher.end_file(size);
                }
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, &entry.rel, io::empty())
                        .map_err(|e| writing(&e))?;
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &entry.rel, target)
                        .map_err(|e| writing(&e))?;
                }
                Kind::HardLink(first) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &entry.rel, first)
                        .map_err(|e| writing(&e))?;
                }
                Kind::Fifo | Kind::CharDevice(..) | Kind::BlockDevice(..) => {
                    let (kind, (major, minor)) = match entry.kind {
                        Kind::CharDevice(a, b) => (tar::EntryType::Char, (a, b)),
                        Kind::BlockDevice(a, b) => (tar::EntryType::Block, (a, b)),
                        _ => (tar::EntryType::Fifo, (0, 0)),
                    };
                    header.set_entry_type(kind);
                    header.set_size(0);
                    header
                        .set_device_major(major)
                        .and_then(|()| header.set_device_minor(minor))
                        .map_err(|e| writing(&e))?;
                    builder
                        .append_data(&mut header, &entry.rel, io::empty())
                        .map_err(|e| writing(&e))?;
                }
            }
            Ok(())
        })?;
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| writing(&e))?;
        Ok(hasher.finish())
    }

    fn content_len(&self, entry: &Entry) -> u64 {
        if entry.name == IGNORE_FILE
            && let Some(text) = self.ignore_contents()
        {
            return text.len() as u64;
        }
        match entry.kind {
            Kind::File(n) => n,
            _ => 0,
        }
    }

    /// Reads the context as [`Context::write_tar`] would send it and returns its summary and
    /// content hash, without writing a tar.
    pub fn hash(&self) -> Result<Summary> {
        let mut hasher = ContentHasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        self.walk(|entry| {
            hasher.begin(entry);
            if let Kind::File(_) = entry.kind {
                let size = self.content_len(entry);
                let mut source = self.open_entry(entry)?.take(size);
                let mut read = 0u64;
                loop {
                    let n = source.read(&mut buf).map_err(|e| {
                        Error::read_io(format!("reading {}", display_path(entry)), &e)
                    })?;
                    if n == 0 {
                        break;
                    }
                    hasher.content(&buf[..n]);
                    read += n as u64;
                }
                if read != size {
                    return Err(changed(entry));
                }
                hasher.end_file(size);
            }
            Ok(())
        })?;
        Ok(hasher.finish())
    }

    /// Sizes and warnings for `--explain-context`: the walk without reading contents.
    pub fn explain(&self, largest: usize) -> Result<Report> {
        let mut report = Report::default();
        let mut dirs: HashMap<String, (u64, u64)> = HashMap::new();
        self.walk(|entry| {
            report.entries += 1;
            let size = match entry.kind {
                Kind::File(_) => self.content_len(entry),
                _ => 0,
            };
            if matches!(entry.kind, Kind::File(_)) {
                report.files += 1;
                report.bytes += size;
                let top = match entry.name.split_once('/') {
                    Some((first, _)) => format!("{first}/"),
                    None => "./".to_owned(),
                };
                let slot = dirs.entry(top).or_default();
                slot.0 += 1;
                slot.1 += size;
                report.largest.push((entry.name.clone(), size));
                if report.largest.len() > largest * 4 + 16 {
                    trim_largest(&mut report.largest, largest);
                }
            }
            for part in entry.name.split('/') {
                if (part == ".git" || part == "node_modules")
                    && !report.warnings.iter().any(|w| w.starts_with(part))
                {
                    report.warnings.push(format!(
                        "{part} is in the context (first at {}): add it to {IGNORE_FILE} unless the build needs it",
                        entry.name
                    ));
                }
            }
            Ok(())
        })?;
        trim_largest(&mut report.largest, largest);
        let mut dirs: Vec<DirSize> = dirs
            .into_iter()
            .map(|(dir, (files, bytes))| DirSize { dir, files, bytes })
            .collect();
        dirs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.dir.cmp(&b.dir)));
        report.dirs = dirs;
        Ok(report)
    }
}

fn trim_largest(list: &mut Vec<(String, u64)>, keep: usize) {
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(keep);
}

/// Files and bytes under one top-level directory of the context (`./` for the root's files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirSize {
    /// The directory, with a trailing `/`.
    pub dir: String,
    /// Regular files sent under it.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What `--explain-context` shows.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Entries sent.
    pub entries: u64,
    /// Regular files sent.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Sizes by top-level directory, largest first.
    pub dirs: Vec<DirSize>,
    /// The largest files, largest first.
    pub largest: Vec<(String, u64)>,
    /// Warnings (`.git` or `node_modules` sent).
    pub warnings: Vec<String>,
}

fn changed(entry: &Entry) -> Error {
    Error::data(format!(
        "{} changed size while the build context was read",
        display_path(entry)
    ))
    .with_hint("do not write into the context directory during the build")
}

fn display_path(entry: &Entry) -> String {
    entry
        .path
        .as_ref()
        .map_or_else(|| entry.name.clone(), |p| p.display().to_string())
}

fn is_injected_name(dockerfile: &Dockerfile, name: &str) -> bool {
    matches!(dockerfile, Dockerfile::Outside { name: injected, .. } if injected == name)
}

fn rel_path(prefix: &str, name: &OsString) -> PathBuf {
    if prefix.is_empty() {
        PathBuf::from(name)
    } else {
        Path::new(prefix).join(name)
    }
}

/// A path as slash-separated text.
fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The `../x/Dockerfile` path the CLI computes for a Dockerfile outside the context.
fn relative_outside(root: &Path, file: &Path) -> String {
    let file = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let root_parts: Vec<_> = root.components().collect();
    let file_parts: Vec<_> = file.components().collect();
    let common = root_parts
        .iter()
        .zip(&file_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["..".to_owned(); root_parts.len() - common];
    parts.extend(
        file_parts[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

fn dev_numbers(rdev: u64) -> (u32, u32) {
    // glibc's gnu_dev_major/minor encoding. The masks make the narrowing exact.
    #[allow(clippy::cast_possible_truncation)]
    let major = (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as u32;
    #[allow(clippy::cast_possible_truncation)]
    let minor = (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as u32;
    (major, minor)
}

/// Lower-case hex of bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The content hash: for each entry in order, a record of its kind, name, mode and link target
/// or size, then a regular file's bytes. Fields are length-prefixed so no two contexts share a
/// byte stream.
struct ContentHasher {
    sha: Sha256,
    summary: Summary,
}

impl ContentHasher {
    fn new() -> Self {
        let mut sha = Sha256::new();
        sha.update(b"imgpipe-context-v1\0");
        Self {
            sha,
            summary: Summary::default(),
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.sha.update((bytes.len() as u64).to_le_bytes());
        self.sha.update(bytes);
    }

    fn begin(&mut self, entry: &Entry) {
        self.summary.entries += 1;
        let (tag, extra): (&[u8], Vec<u8>) = match &entry.kind {
            Kind::Dir => (b"d", Vec::new()),
            Kind::File(_) => (b"f", Vec::new()),
            Kind::Symlink(t) => (b"l", t.as_os_str().as_bytes().to_vec()),
            Kind::HardLink(t) => (b"h", t.as_bytes().to_vec()),
            Kind::Fifo => (b"p", Vec::new()),
            Kind::CharDevice(a, b) => (b"c", format!("{a}:{b}").into_bytes()),
            Kind::BlockDevice(a, b) => (b"b", format!("{a}:{b}").into_bytes()),
        };
        self.field(tag);
        self.field(entry.rel.as_os_str().as_bytes());
        self.field(&entry.mode.to_le_bytes());
        self.field(&extra);
    }

    fn content(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    fn end_file(&mut self, size: u64) {
        // The size after the content keeps the stream unambiguous without knowing it up front.
        self.sha.update(size.to_le_bytes());
        self.summary.files += 1;
        self.summary.bytes += size;
    }

    fn finish(self) -> Summary {
        let mut summary = self.summary;
        summary.hash = format!("sha256:{}", hex(&self.sha.finalize()));
        summary
    }
}

struct HashingReader<'h, R> {
    inner: R,
    hasher: &'h mut ContentHasher,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.content(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    fn names(ctx: &Context) -> Vec<(String, Kind, u32)> {
        let mut out = Vec::new();
        ctx.walk(|e| {
            out.push((e.name.clone(), e.kind.clone(), e.mode));
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
        let sent = [
            ".dockerignore",
            "Dockerfile",
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
        let err = Context::open(&dir.path().join("nope"), None, Options::default())
            .expect_err("no context");
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
}
