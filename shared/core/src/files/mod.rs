//! Local files: read only when they are regular files and within a size limit, written so that
//! a reader sees the old content or the new, never half of either.
//!
//! Every file a tool reads or writes goes through here, so the rules for a symlink, a FIFO, a
//! device or a file too large to be what it claims live in one place.

mod write;

pub use write::{check_writable, lock, write_all, write_atomic, write_secret_locked};
mod read;

pub use read::{
    DATA_LIMIT, STATE_LIMIT, TEXT_LIMIT, open_regular, read_if_exists, read_limited, read_regular,
    read_text,
};

/// A limit in words: `4 MiB`, `64 KiB`, `10 B`.
#[must_use]
pub fn human_limit(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}
