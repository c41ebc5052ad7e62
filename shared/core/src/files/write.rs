//! Writing: a file is replaced atomically (a temporary file in the same directory, flushed to
//! disk, then renamed over the target), so a crash, a full disk or a kill at any point leaves
//! the target as it was. What the path names decides how:
//!
//! - a regular file, or nothing yet: replaced atomically; a new file gets 0644, or the mode
//!   the caller asks for (0600 for a secret); an existing one keeps its mode;
//! - a symbolic link: followed, and its target replaced atomically, as the docker CLI does for
//!   `config.json`; the link stays a link;
//! - a FIFO, a character device, a socket (`/dev/stdout`, `/dev/null`, a pipe a CI step reads):
//!   written directly, never replaced by a regular file;
//! - a directory: refused.
//!
//! A run's outputs are checked before any side effect ([`check_writable`]) and written all or
//! none ([`write_all`]).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How many links are followed before a chain counts as a loop (Linux's own limit).
const MAX_LINKS: usize = 40;

/// What a path names, for writing.
enum Target {
    /// A regular file, or nothing yet, at this path (links resolved).
    File(PathBuf),
    /// Something written in place: a FIFO, a device, a socket.
    Stream,
}

fn failed(path: &Path, err: &std::io::Error) -> Error {
    Error::write_io(format!("writing {}", path.display()), err)
}

/// Decides how `path` is written, following links to the file they name.
fn target(path: &Path) -> Result<Target> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::new(
            crate::exit::IO,
            format!("writing {}: it is a directory", path.display()),
        )
        .with_hint("name a file, not a directory")),
        Ok(meta) if meta.is_file() => {
            // The kernel resolves every link, /proc's included.
            let real = std::fs::canonicalize(path).map_err(|e| failed(path, &e))?;
            Ok(Target::File(real))
        }
        // A FIFO, a device or a socket.
        Ok(_) => Ok(Target::Stream),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::File(dangling(path)?)),
        Err(e) => Err(failed(path, &e)),
    }
}

/// The file a path names that does not exist yet: itself, or where its (dangling) links lead.
fn dangling(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = std::fs::read_link(&current).map_err(|e| failed(path, &e))?;
                current = match current.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(failed(
        path,
        &std::io::Error::from_raw_os_error(libc::ELOOP),
    ))
}

/// The directory a file is created in.
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks, before any side effect, that `path` can be written: it is not a directory, and the
/// directory a new file would go in exists. Exit 74 otherwise, naming the path.
pub fn check_writable(path: &Path) -> Result<()> {
    if let Target::File(file) = target(path)? {
        let dir = dir_of(&file);
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::new(
                    crate::exit::IO,
                    format!(
                        "writing {}: {} is not a directory",
                        path.display(),
                        dir.display()
                    ),
                ));
            }
            Err(e) => {
                return Err(failed(path, &e).with_hint(format!(
                    "create the directory {} first, or name another path",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Writes `contents` to `path` as the module documentation says. With `mode`, a new or
/// replaced file gets those permission bits (e.g. `0o600` for credentials) before it becomes
/// visible; without, it keeps the existing file's bits, or gets 0o644 when new.
pub fn write_atomic(path: &Path, contents: &[u8], mode: Option<u32>) -> Result<()> {
    match target(path)? {
        Target::Stream => write_in_place(path, contents),
        Target::File(file) => replace(path, &file, contents, mode),
    }
}

/// Writes a file that holds a secret (mode 0600) while the caller holds the lock that guards
/// it: temporary files of the same name left by a writer that was killed are removed first,
/// so that no copy of an old secret piles up.
pub fn write_secret_locked(path: &Path, contents: &[u8]) -> Result<()> {
    if let Target::File(file) = target(path)? {
        remove_stale_temps(&file);
    }
    write_atomic(path, contents, Some(0o600))
}

/// Waits for an exclusive lock on the file at `path` (created if missing, never truncated);
/// the lock holds while the returned file is open. Writers of a secret take one before
/// [`write_secret_locked`].
pub fn lock(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::write_io(format!("opening lock file {}", path.display()), &e))?;
    file.lock()
        .map_err(|e| Error::write_io(format!("locking {}", path.display()), &e))?;
    Ok(file)
}

/// The temporary-file prefix of `file`: `.<name>.`.
fn temp_prefix(file: &Path) -> String {
    format!(
        ".{}.",
        file.file_name()
            .map_or_else(|| "tmp".into(), |n| n.to_string_lossy())
    )
}

/// A temporary file beside `file` (mode 0600), named as the atomic replacements here name theirs,
/// for a caller that writes it a piece at a time and then renames it over `file`
/// (`NamedTempFile::persist`). Temporary files of `file` more than an hour old, which a killed
/// writer left, are removed first; a running writer's are newer.
pub fn temp_beside(file: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    remove_temps(file, Some(hour_ago));
    tempfile::Builder::new()
        .prefix(&temp_prefix(file))
        .suffix(".tmp")
        .tempfile_in(dir_of(file))
}

fn remove_stale_temps(file: &Path) {
    remove_temps(file, None);
}

/// Removes the temporary files of `file`: all, or those last written before `before`.
fn remove_temps(file: &Path, before: Option<std::time::SystemTime>) {
    let prefix = temp_prefix(file);
    let Ok(entries) = std::fs::read_dir(dir_of(file)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let old = before.is_none_or(|before| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before)
        });
        let is_temp = name.starts_with(&prefix)
            && name.ends_with(".tmp")
            && entry.file_type().is_ok_and(|t| t.is_file());
        if is_temp && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_in_place(path: &Path, contents: &[u8]) -> Result<()> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| failed(path, &e))?;
    out.write_all(contents)
        .and_then(|()| out.flush())
        .map_err(|e| failed(path, &e))
}

fn replace(shown: &Path, file: &Path, contents: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = dir_of(file);
    let mode = mode.unwrap_or_else(|| {
        std::fs::metadata(file).map_or(0o644, |m| m.permissions().mode() & 0o7777)
    });
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(file))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| failed(shown, &e))?;
    // The umask may have narrowed the mode given at creation: set it exactly.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| failed(shown, &e))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| failed(shown, &e))?;
    temp.persist(file).map_err(|e| failed(shown, &e.error))?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A file's content and mode before a write, to put back.
type Before = (Vec<u8>, u32);

/// Writes each `(path, contents)` in order, all or none: every path is checked first, and if a
/// write fails, the files this call wrote before it are put back as they were (removed if they
/// did not exist). A FIFO or device already written cannot be taken back.
pub fn write_all(outputs: &[(&Path, Vec<u8>)]) -> Result<()> {
    for (path, _) in outputs {
        check_writable(path)?;
    }
    let mut done: Vec<(PathBuf, Option<Before>)> = Vec::new();
    for (path, contents) in outputs {
        let before = match target(path) {
            Ok(Target::File(file)) => {
                let old = std::fs::read(&file).ok().map(|bytes| {
                    let mode =
                        std::fs::metadata(&file).map_or(0o644, |m| m.permissions().mode() & 0o7777);
                    (bytes, mode)
                });
                Some((file, old))
            }
            _ => None,
        };
        if let Err(err) = write_atomic(path, contents, None) {
            for (file, old) in done.into_iter().rev() {
                let _ = match old {
                    Some((bytes, mode)) => replace(&file, &file, &bytes, Some(mode)),
                    None => std::fs::remove_file(&file).map_err(|e| failed(&file, &e)),
                };
            }
            return Err(err);
        }
        if let Some(entry) = before {
            done.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        write_atomic(&path, b"{}", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(mode(&path), 0o600);
        write_atomic(&path, b"{\"a\":1}", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(mode(&path), 0o600, "an existing file keeps its mode");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_directory_leaves_nothing_and_is_74() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.txt");
        let err = write_atomic(&path, b"x", None).unwrap_err();
        assert!(err.message().contains("out.txt"), "{}", err.message());
        assert_eq!(err.code(), crate::exit::IO);
        assert_eq!(check_writable(&path).unwrap_err().code(), crate::exit::IO);
        assert!(!path.exists());
    }

    #[test]
    fn links_are_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomic(&link, b"new", None).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link: its target is created.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("made.json", &dangling).unwrap();
        write_atomic(&dangling, b"made", Some(0o600)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("made.json")).unwrap(),
            b"made"
        );
        assert_eq!(mode(&dir.path().join("made.json")), 0o600);
    }

    #[test]
    fn devices_are_written_in_place_and_directories_refused() {
        write_atomic(Path::new("/dev/null"), b"x", None).unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x", None).unwrap_err();
        assert_eq!(err.code(), crate::exit::IO);
        assert!(
            err.message().contains("is a directory"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn stale_secret_temps_are_removed_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let stale = dir.path().join(".config.json.abc123.tmp");
        std::fs::write(&stale, "old token").unwrap();
        let other = dir.path().join(".other.json.abc123.tmp");
        std::fs::write(&other, "not ours").unwrap();
        write_secret_locked(&path, b"{}").unwrap();
        assert!(!stale.exists());
        assert!(other.exists());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.txt");
        std::fs::write(&kept, "before").unwrap();
        let new = dir.path().join("new.txt");
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        // Checked first: nothing is written when a later path is a directory.
        let err = write_all(&[
            (kept.as_path(), b"after".to_vec()),
            (new.as_path(), b"n".to_vec()),
            (blocked.as_path(), b"x".to_vec()),
        ])
        .unwrap_err();
        assert_eq!(err.code(), crate::exit::IO);
        assert_eq!(std::fs::read(&kept).unwrap(), b"before");
        assert!(!new.exists());
        write_all(&[
            (kept.as_path(), b"after".to_vec()),
            (new.as_path(), b"n".to_vec()),
        ])
        .unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), b"after");
        assert_eq!(std::fs::read(&new).unwrap(), b"n");
        // A write that fails after others succeeded (/dev/full: no space) puts them back.
        std::fs::remove_file(&new).unwrap();
        let err = write_all(&[
            (kept.as_path(), b"third".to_vec()),
            (new.as_path(), b"n".to_vec()),
            (Path::new("/dev/full"), b"x".to_vec()),
        ])
        .unwrap_err();
        assert_eq!(err.code(), crate::exit::IO);
        assert_eq!(std::fs::read(&kept).unwrap(), b"after");
        assert!(!new.exists());
    }
}
