//! `.dockerignore`: reading the file and matching paths against its patterns, as moby's
//! `patternmatcher` and the docker CLI do (see the crate documentation).

use shared::error::{Error, Result};

use crate::IGNORE_FILE;

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
    pub(crate) fn new(text: &str, origin: Origin) -> Result<Option<Self>> {
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
    pub(crate) fn matches_or_parent(&self, path: &str) -> bool {
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

    pub(crate) fn push(&mut self, pattern: &str, origin: Origin) -> Result<()> {
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
