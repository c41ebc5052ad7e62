//! Local files: read only when they are regular files and within a size limit, written so that
//! a reader sees the old content or the new, never half of either.
//!
//! Every file a tool reads or writes goes through here, so the rules for a symlink, a FIFO, a
//! device or a file too large to be what it claims live in one place.

mod write;

pub use write::{check_writable, lock, temp_beside, write_all, write_atomic, write_secret_locked};
mod read;

pub use read::{
    DATA_LIMIT, STATE_LIMIT, TEXT_LIMIT, check_regular, open_regular, read_if_exists, read_limited,
    read_regular, read_text,
};

/// imgpipe's cache directory for `what` (`$XDG_CACHE_HOME/imgpipe/<what>`, else
/// `~/.cache/imgpipe/<what>`), if a cache or home directory is known.
#[must_use]
pub fn cache_dir(what: &str) -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| std::path::PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("imgpipe").join(what))
}
