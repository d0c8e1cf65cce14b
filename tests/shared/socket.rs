//! Blocking loopback TCP for the tests: connecting with the test timeouts, reading more onto a
//! buffer, and reading a stream to its end. Every read is bounded, so a broken server fails a
//! test instead of hanging it.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::IO_TIMEOUT;

/// How a peer ended the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly FIN: `read` returned 0.
    Eof,
    /// A reset.
    Reset,
}

/// What reading a stream to its end found.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// How it ended.
    pub how: Closed,
    /// Bytes that arrived before the end (and were discarded).
    pub discarded: usize,
    /// Time from the call until the end.
    pub after: Duration,
}

/// Connects to `addr` with TCP_NODELAY and the test timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    configure(&stream);
    stream
}

/// Applies TCP_NODELAY (so split writes leave as separate segments) and the test timeouts.
pub fn configure(stream: &TcpStream) {
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
}

/// Whether a blocking read or write gave up on its timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One read onto the end of `inbound`; panics on end of stream, an error or the stream's read
/// timeout.
pub fn read_more(stream: &mut TcpStream, inbound: &mut BytesMut) {
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => {
                inbound.extend_from_slice(&buf[..n]);
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read from the server failed: {e}"),
        }
    }
}

/// Reads `stream` until the peer closes it, discarding what arrives; panics if it is still
/// open after `within`.
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Ending {
    let start = Instant::now();
    let deadline = start + within;
    let mut buf = [0u8; 16 << 10];
    let mut discarded = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {within:?} ({discarded} bytes read meanwhile)"
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        let how = match stream.read(&mut buf) {
            Ok(0) => Closed::Eof,
            Ok(n) => {
                discarded += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Closed::Reset,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed: {e}"),
        };
        return Ending {
            how,
            discarded,
            after: start.elapsed(),
        };
    }
}
