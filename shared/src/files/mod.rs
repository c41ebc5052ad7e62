//! Local files: read only when they are regular files and within a size limit, written so that
//! a reader sees the old content or the new, never half of either.
//!
//! Every file a tool reads or writes goes through here, so the rules for a symlink, a FIFO, a
//! device or a file too large to be what it claims live in one place.

mod write;

pub use write::write_atomic;
