//! Reading: only regular files, and only up to a limit.
//!
//! A path a tool reads may be a FIFO that nobody writes (a read that hangs), a device such as
//! `/dev/zero` (a read that never ends) or a link to either. The file is opened without
//! blocking, `fstat` on the open descriptor says what it is, and anything but a regular file is
//! refused before a byte is read. A regular file is then read up to `limit` bytes: a larger one
//! is refused as bad input, because no Dockerfile, policy or config is that large.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Limit for the Docker config, a `.dockerignore`, a Dockerfile, a policy or an allowlist.
pub const TEXT_LIMIT: u64 = 4 << 20;
/// Limit for scan findings and image lists, which grow with the image.
pub const DATA_LIMIT: u64 = 64 << 20;
/// Limit for the tools' own small state files (the token cache).
pub const STATE_LIMIT: u64 = 64 << 10;

/// Opens `path` for reading if it is a regular file (after following links). `what` names it
/// in errors, e.g. `policy file`. A FIFO, a device, a socket or a directory is exit 66.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let shown = path.display();
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::read_io(format!("reading {what} {shown}"), &e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::read_io(format!("reading {what} {shown}"), &e))?;
    let kind = meta.file_type();
    let not = if kind.is_file() {
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(Error::new(
        crate::exit::NO_INPUT,
        format!("reading {what} {shown}: it is {not}, not a regular file"),
    )
    .with_hint(format!("pass a regular file as the {what}")))
}

/// Reads all of `path`, a regular file of at most `limit` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, what)?;
    read_limited(file, limit, &format!("{what} {}", path.display()))
}

/// Reads all of `path` as UTF-8 text (see [`read_regular`]); text that is not UTF-8 is exit 65.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let bytes = read_regular(path, limit, what)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::data(format!(
            "reading {what} {}: it is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// As [`read_regular`], but a file that does not exist is `None`.
pub fn read_if_exists(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    match read_regular(path, limit, what) {
        Ok(bytes) => Ok(Some(bytes)),
        // A dangling link is as good as no file, as for the docker CLI.
        Err(_) if !path.exists() && std::fs::symlink_metadata(path).is_ok() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `source` to its end, refusing more than `limit` bytes (exit 65). `what` names the
/// source in errors, e.g. `standard input`.
pub fn read_limited(source: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    source
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::read_io(format!("reading {what}"), &e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(what, limit));
    }
    Ok(bytes)
}

/// Checks that `path` is a regular file of at most `limit` bytes, without reading it: for a
/// file another program reads (the daemon reads an in-context Dockerfile).
pub fn check_regular(path: &Path, limit: u64, what: &str) -> Result<()> {
    let file = open_regular(path, what)?;
    let size = file
        .metadata()
        .map_err(|e| Error::read_io(format!("reading {what} {}", path.display()), &e))?
        .len();
    if size > limit {
        return Err(too_large(&format!("{what} {}", path.display()), limit));
    }
    Ok(())
}

fn too_large(what: &str, limit: u64) -> Error {
    Error::data(format!(
        "reading {what}: it is larger than {}, the limit for it",
        crate::show::limit(limit)
    ))
    .with_hint("check that the path names the file meant")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    #[test]
    fn regular_files_are_read_and_others_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_regular(&file, 10, "policy").unwrap(), b"{}");

        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_regular(&fifo, 10, "policy").unwrap_err();
        assert_eq!(err.code(), exit::NO_INPUT);
        assert!(err.message().contains("it is a FIFO"), "{}", err.message());

        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_regular(&link, 10, "policy").unwrap_err();
        assert!(
            err.message().contains("a character device"),
            "{}",
            err.message()
        );
        let err = read_regular(dir.path(), 10, "policy").unwrap_err();
        assert!(err.message().contains("a directory"), "{}", err.message());
    }

    #[test]
    fn limits_and_encodings_are_bad_data() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_regular(&file, 5, "x").unwrap().len(), 5);
        let err = read_regular(&file, 4, "x").unwrap_err();
        assert_eq!(err.code(), exit::DATA);
        assert!(
            err.message().contains("larger than 4 B"),
            "{}",
            err.message()
        );
        std::fs::write(&file, b"ok\xff").unwrap();
        let err = read_text(&file, 10, "x").unwrap_err();
        assert_eq!(err.code(), exit::DATA);
        assert!(err.message().contains("offset 2"), "{}", err.message());
    }

    #[test]
    fn absent_files_and_dangling_links_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_if_exists(&dir.path().join("no"), 9, "x")
                .unwrap()
                .is_none()
        );
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        assert!(read_if_exists(&link, 9, "x").unwrap().is_none());
    }
}
