//! The request body: the context's tar in chunks, written as the walk produces it.

use std::io::{self, Write};

use bytes::Bytes;

use crate::CHUNK;

/// Where the tar bytes go: chunks into the request body's channel.
pub(crate) struct ChunkWriter {
    pub(crate) tx: tokio::sync::mpsc::Sender<std::result::Result<Bytes, io::Error>>,
    pub(crate) buf: Vec<u8>,
}

impl ChunkWriter {
    pub(crate) fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
