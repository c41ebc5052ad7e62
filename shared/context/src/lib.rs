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
//! - Two transfers, one walk. The classic builder takes a tar body, and BuildKit takes the
//!   files through its session (file sync); each [`Entry`] says which of them sends it
//!   ([`Role`]):
//!   - for the tar, the Dockerfile and `.dockerignore` are always sent (the CLI appends
//!     `!Dockerfile` and `!.dockerignore` when the patterns would exclude them, and the daemon
//!     removes them again after reading them). A Dockerfile outside the context is added as
//!     `.dockerfile.<20 hex>` (mode 0600) and that name appended to `.dockerignore`. The CLI
//!     picks a random name; here it comes from the Dockerfile's own hash, so the same inputs
//!     give the same bytes;
//!   - through file sync the patterns apply as written and nothing is added: the Dockerfile
//!     travels on its own. An excluded directory that holds a re-included entry is sent too,
//!     because the receiver needs every parent before its children.
//! - The content hash describes what the build sees, whichever transfer carries it: the entries
//!   file sync sends, then the Dockerfile's bytes.
//! - Headers: symlinks are stored (never followed), hard links stored as links to the first path
//!   sent, the permission bits (with setuid/setgid/sticky) kept, uid and gid 0, no user names.
//!   Sockets are skipped, as the CLI does. Modification times are fixed (see [`Options::mtime`]),
//!   so the same tree gives the same tar bytes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use shared::error::{Error, Result};
use shared::files;

mod cache;
mod ignore;
mod listing;
mod report;
mod stream;

pub use cache::HashCache;
pub use ignore::*;
pub use listing::{ListedFile, Listing, Window};
pub use report::{DirSize, Report};

/// The `.dockerignore` file name, at the context root.
pub const IGNORE_FILE: &str = ".dockerignore";

/// 1980-01-01T00:00:00Z: the modification time given to every entry unless `SOURCE_DATE_EPOCH`
/// says otherwise. Not 0: zip-based tools (Python wheels, jar) reject times before 1980.
pub const DEFAULT_MTIME: u64 = 315_532_800;

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
    /// The Dockerfile on disk, resolved.
    dockerfile_path: PathBuf,
    /// Names kept only by the rules the CLI adds for the tar (`!Dockerfile`, `!.dockerignore`).
    added: Vec<String>,
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

/// Which transfer sends an entry (see the crate documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Both the tar body and file sync.
    Both,
    /// Only the tar body: kept by the CLI's added `!Dockerfile` or `!.dockerignore`, or injected
    /// for a Dockerfile outside the context.
    TarOnly,
    /// Only file sync: an excluded directory holding a re-included entry, or a file of the
    /// injected name that the tar replaces.
    SessionOnly,
}

impl Role {
    /// Whether BuildKit's file sync sends the entry (and so whether the build sees it).
    #[must_use]
    pub fn in_session(self) -> bool {
        self != Role::TarOnly
    }

    /// Whether the tar body holds the entry.
    #[must_use]
    pub fn in_tar(self) -> bool {
        self != Role::SessionOnly
    }
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
    /// The same time in nanoseconds.
    pub mtime_ns: i64,
    /// A number that changes whenever the file may have changed (its times, inode and size
    /// mixed), without reading it: file sync's receiver compares it to skip unchanged files.
    pub stamp: u64,
    /// Its change time (seconds): the hash cache trusts only files that have not changed in
    /// the last moments.
    pub ctime: i64,
    /// Which transfer sends it.
    pub role: Role,
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
    /// `sha256:<hex>` over names, kinds, modes, link targets and contents, in order, then the
    /// Dockerfile's bytes: what the build sees. Times, owners and the transfer's framing are not
    /// part of it.
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
        files::check_regular(&resolved, files::TEXT_LIMIT, "Dockerfile")
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
            // Outside the context, the client reads it and sends it.
            let contents = files::read_regular(&resolved, files::TEXT_LIMIT, "Dockerfile")?;
            let digest = hex::encode(Sha256::digest(&contents));
            Dockerfile::Outside {
                path: given,
                name: format!(".dockerfile.{}", &digest[..20]),
                contents,
            }
        };
        // The CLI's TrimBuildFilesFromExcludes, for the tar: keep .dockerignore and the
        // Dockerfile.
        let mut added = Vec::new();
        if ignore.matches_or_parent_matches(IGNORE_FILE).excluded {
            ignore.push(&format!("!{IGNORE_FILE}"), Origin::Added)?;
            added.push(IGNORE_FILE.to_owned());
        }
        let rel_dockerfile = match &dockerfile {
            Dockerfile::Inside(rel) => rel.clone(),
            Dockerfile::Outside { path, .. } => relative_outside(&root, path),
        };
        if ignore.matches_or_parent_matches(&rel_dockerfile).excluded {
            ignore.push(&format!("!{rel_dockerfile}"), Origin::Added)?;
            added.push(rel_dockerfile);
        }
        Ok(Self {
            root,
            ignore,
            ignore_text,
            dockerfile,
            dockerfile_path: resolved,
            added,
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

    /// The Dockerfile for people: its path in the context, or its path on disk when it is outside.
    #[must_use]
    pub fn dockerfile_shown(&self) -> String {
        match &self.dockerfile {
            Dockerfile::Inside(rel) => rel.clone(),
            Dockerfile::Outside { .. } => self.dockerfile_path.display().to_string(),
        }
    }

    /// The Dockerfile on disk (resolved).
    #[must_use]
    pub fn dockerfile_path(&self) -> &Path {
        &self.dockerfile_path
    }

    /// The Dockerfile's file name, as file sync serves it from its own directory.
    #[must_use]
    pub fn dockerfile_base_name(&self) -> String {
        self.dockerfile_path.file_name().map_or_else(
            || "Dockerfile".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The Dockerfile as file sync serves it: alone in its directory, under its own file name.
    pub fn dockerfile_entry(&self) -> Result<Entry> {
        let path = &self.dockerfile_path;
        let meta = fs::metadata(path).map_err(|e| {
            Error::read_io(format!("reading the Dockerfile {}", path.display()), &e)
        })?;
        let name = self.dockerfile_base_name();
        Ok(Entry {
            rel: PathBuf::from(&name),
            name,
            path: Some(path.clone()),
            kind: Kind::File(meta.len()),
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            mtime_ns: mtime_ns(&meta),
            stamp: stamp(&meta),
            ctime: meta.ctime(),
            role: Role::Both,
        })
    }

    /// The modification time given to `entry` in file sync, in nanoseconds. With fixed times, a
    /// regular file gets the fixed second plus a fraction drawn from its stamp: the receiver
    /// compares times to find changed files, and the layer keeps whole seconds only.
    #[must_use]
    pub fn session_mtime_ns(&self, entry: &Entry) -> i64 {
        const NANOS: i64 = 1_000_000_000;
        match self.options.mtime {
            None => entry.mtime_ns,
            Some(fixed) => {
                let second = i64::try_from(fixed).unwrap_or(0).saturating_mul(NANOS);
                match entry.kind {
                    Kind::File(_) | Kind::HardLink(_) => {
                        let fraction = i64::try_from(entry.stamp % (NANOS as u64 - 1)).unwrap_or(0);
                        second + 1 + fraction
                    }
                    _ => second,
                }
            }
        }
    }

    /// Visits every entry of both transfers, in order (see [`Role`]). File contents are not
    /// read.
    pub fn walk(&self, mut visit: impl FnMut(&Entry) -> Result<()>) -> Result<()> {
        self.walk_pruned(&|_| true, &mut visit)
    }

    /// [`Context::walk`], descending only into the directories `enter` accepts (given their
    /// slash-separated names); the directories themselves are still visited.
    pub fn walk_pruned(
        &self,
        enter: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(&Entry) -> Result<()>,
    ) -> Result<()> {
        let mut walk = Walk {
            links: HashMap::new(),
            pending: Vec::new(),
            enter,
            visit,
        };
        self.walk_dir(&self.root, "", None, &mut walk)?;
        for entry in self.injected() {
            (walk.visit)(&entry)?;
        }
        Ok(())
    }

    fn walk_dir(
        &self,
        dir: &Path,
        prefix: &str,
        parent: Option<&MatchInfo>,
        walk: &mut Walk<'_>,
    ) -> Result<()> {
        let reading =
            |e: &io::Error| Error::read_io(format!("reading directory {}", dir.display()), e);
        // Each entry is looked at through the directory's own descriptor (`fstatat`), not by
        // its full path, and an excluded one only when the walk must enter it: on a large
        // context, resolving full paths and statting what is excluded took most of the walk.
        let mut items: Vec<(OsString, fs::DirEntry)> = Vec::new();
        for item in fs::read_dir(dir).map_err(|e| reading(&e))? {
            let item = item.map_err(|e| reading(&e))?;
            items.push((item.file_name(), item));
        }
        items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (os_name, item) in items {
            let path = dir.join(&os_name);
            let lossy = String::from_utf8_lossy(os_name.as_bytes());
            let name = if prefix.is_empty() {
                lossy.into_owned()
            } else {
                format!("{prefix}/{lossy}")
            };
            let (verdict, info) = self.ignore.matches_using_parent(&name, parent);
            if verdict.excluded
                && !(self.ignore.has_exceptions()
                    && self.ignore.must_enter(&name)
                    && item.file_type().is_ok_and(|t| t.is_dir()))
            {
                continue;
            }
            let meta = match item.metadata() {
                Ok(meta) => meta,
                // Gone between the listing and now: the CLI skips it too.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::read_io(format!("reading {}", path.display()), &e)),
            };
            let file_type = meta.file_type();
            let rel = rel_path(prefix, &os_name);
            if verdict.excluded {
                if file_type.is_dir() && (walk.enter)(&name) {
                    // Sent through file sync only if something under it is.
                    let mark = walk.pending.len();
                    walk.pending.push(Entry {
                        name: name.clone(),
                        rel,
                        path: Some(path.clone()),
                        kind: Kind::Dir,
                        mode: meta.mode() & 0o7777,
                        mtime: meta.mtime(),
                        mtime_ns: mtime_ns(&meta),
                        stamp: 0,
                        ctime: meta.ctime(),
                        role: Role::SessionOnly,
                    });
                    self.walk_dir(&path, &name, Some(&info), walk)?;
                    walk.pending.truncate(mark);
                }
                continue;
            }
            let role = if self.added.contains(&name) {
                Role::TarOnly
            } else if is_injected_name(&self.dockerfile, &name) {
                // The CLI replaces an entry of the injected name in the tar.
                Role::SessionOnly
            } else {
                Role::Both
            };
            // Sockets are skipped, as the CLI does.
            let Some(kind) = kind_of(&path, &meta)? else {
                continue;
            };
            let kind = match kind {
                Kind::Dir => Kind::Dir,
                other if meta.nlink() > 1 => match walk.links.entry((meta.dev(), meta.ino())) {
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
                mtime_ns: mtime_ns(&meta),
                stamp: stamp(&meta),
                ctime: meta.ctime(),
                role,
            };
            if role.in_session() {
                // The excluded directories above it go first, once.
                for parent in walk.pending.drain(..) {
                    (walk.visit)(&parent)?;
                }
            }
            (walk.visit)(&entry)?;
            if file_type.is_dir() && (walk.enter)(&name) {
                self.walk_dir(&path, &name, Some(&info), walk)?;
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
            mtime_ns: 0,
            stamp: 0,
            ctime: 0,
            role: Role::TarOnly,
        }];
        if self.ignore_text.is_none() {
            out.push(Entry {
                name: IGNORE_FILE.to_owned(),
                rel: PathBuf::from(IGNORE_FILE),
                path: None,
                kind: Kind::File(self.ignore_contents().map_or(0, |c| c.len() as u64)),
                mode: 0o600,
                mtime: 0,
                mtime_ns: 0,
                stamp: 0,
                ctime: 0,
                role: Role::TarOnly,
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
                Ok(Box::new(open_walked(path, entry.stamp)?))
            }
            (None, Dockerfile::Inside(_)) => Err(Error::internal(format!(
                "no source for context entry {}",
                entry.name
            ))),
        }
    }
}

/// The state of one walk: hard links seen, excluded directories not yet sent, the callbacks.
struct Walk<'a> {
    links: HashMap<(u64, u64), String>,
    pending: Vec<Entry>,
    enter: &'a dyn Fn(&str) -> bool,
    visit: &'a mut dyn FnMut(&Entry) -> Result<()>,
}

/// What a directory entry is, read without following it; `None` for a socket.
fn kind_of(path: &Path, meta: &fs::Metadata) -> Result<Option<Kind>> {
    let file_type = meta.file_type();
    Ok(Some(if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        let target = fs::read_link(path)
            .map_err(|e| Error::read_io(format!("reading link {}", path.display()), &e))?;
        Kind::Symlink(target)
    } else if file_type.is_socket() {
        return Ok(None);
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
    }))
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Mixes what changes when a file is written or replaced (modification and change times, inode,
/// size) into one number (splitmix64 steps: stable across runs and versions).
fn stamp(meta: &fs::Metadata) -> u64 {
    fn mix(state: u64, value: u64) -> u64 {
        let mut z = (state ^ value).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    [
        meta.mtime().cast_unsigned(),
        meta.mtime_nsec().cast_unsigned(),
        meta.ctime().cast_unsigned(),
        meta.ctime_nsec().cast_unsigned(),
        meta.ino(),
        meta.dev(),
        meta.len(),
    ]
    .into_iter()
    .fold(0, mix)
}

/// Opens the file the walk saw at `path` to read its bytes, if it still is that file: a regular
/// file (a link in its place is not followed) whose metadata give the walk's `stamp` (`0`: not
/// known, not checked). A file replaced since the walk, even by one of the same size, or a
/// directory on the way swapped for a link that leads out of the context, opens another inode
/// and is refused before a byte is read.
pub fn open_walked(path: &Path, stamp: u64) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path);
    let same = match &file {
        Ok(file) => file
            .metadata()
            .is_ok_and(|meta| meta.is_file() && (stamp == 0 || self::stamp(&meta) == stamp)),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => false,
        Err(e) => {
            return Err(Error::read_io(format!("reading {}", path.display()), e));
        }
    };
    match file {
        Ok(file) if same => Ok(file),
        _ => Err(Error::data(format!(
            "{} was replaced while the build context was read",
            path.display()
        ))
        .with_hint("do not write into the context directory during the build")),
    }
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

#[cfg(test)]
mod tests;
