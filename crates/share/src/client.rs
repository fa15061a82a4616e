//! The consumer's side (the OBS plugin): connect to the engine's frame socket, receive the
//! ring, read it, and notice when the engine is gone or stuck. Nothing here blocks for long:
//! connecting fails at once when no engine listens, and the health check never waits.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::ring::ShareReader;
use crate::{ShareError, HELLO};

/// What [`ShareClient::health`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The engine is there and beating.
    Alive,
    /// The engine process is there but has shown no sign of life for this long.
    Stalled(Duration),
    /// The engine is gone (why, in words); connect again to continue.
    Gone(String),
}

/// A connection to a running engine's frame share.
pub struct ShareClient {
    stream: UnixStream,
    reader: ShareReader,
    watching: Option<bool>,
}

impl ShareClient {
    /// Connects and maps the ring; waits at most `timeout` for the engine's hello.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ShareError> {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let stream = UnixStream::connect(path).map_err(|source| ShareError::Connect { path: path.to_path_buf(), source })?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| io("setting a timeout", e))?;
        let mut hello = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(&stream, &mut [IoSliceMut::new(&mut hello)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| io("waiting for the engine's hello", e.into()))?;
        let mut fd: Option<OwnedFd> = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for received_fd in fds {
                    fd.get_or_insert(received_fd);
                }
            }
        }
        let text = String::from_utf8_lossy(&hello[..received.bytes]);
        if text != HELLO {
            return Err(ShareError::Protocol(format!("{} is not a livetalk frame socket (it said `{}`)", path.display(), text.trim())));
        }
        let fd = fd.ok_or_else(|| ShareError::Protocol("the engine's hello came without the shared memory".into()))?;
        let reader = ShareReader::open(fd)?;
        stream.set_nonblocking(true).map_err(|e| io("setting up the socket", e))?;
        Ok(ShareClient { stream, reader, watching: None })
    }

    pub fn reader(&mut self) -> &mut ShareReader {
        &mut self.reader
    }

    /// Process id of the engine serving this connection.
    pub fn writer_pid(&self) -> u32 {
        self.reader.writer_pid()
    }

    /// Tells the engine whether this consumer shows the avatar now (it idles when nobody does).
    pub fn set_watching(&mut self, watching: bool) -> Result<(), ShareError> {
        if self.watching == Some(watching) {
            return Ok(());
        }
        let line = if watching { "watching 1\n" } else { "watching 0\n" };
        (&self.stream).write_all(line.as_bytes()).map_err(|e| io("telling the engine whether we watch", e))?;
        self.watching = Some(watching);
        Ok(())
    }

    /// Is the engine still there? A closed socket or ring means gone; a heartbeat older than
    /// `stale_after` means stalled. Never waits.
    pub fn health(&mut self, stale_after: Duration) -> Health {
        let mut scratch = [0u8; 256];
        loop {
            match (&self.stream).read(&mut scratch) {
                Ok(0) => return Health::Gone("the engine closed the connection".into()),
                Ok(_) => continue, // nothing is sent after the hello yet; tolerate it
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Health::Gone(format!("the connection to the engine failed: {e}")),
            }
        }
        if self.reader.writer_closed() {
            return Health::Gone("the engine stopped sharing frames".into());
        }
        let age = self.reader.heartbeat_age();
        if age > stale_after {
            Health::Stalled(age)
        } else {
            Health::Alive
        }
    }
}

fn io(what: &str, source: std::io::Error) -> ShareError {
    ShareError::Io { what: what.into(), source }
}
