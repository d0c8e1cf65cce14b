//! `Wire`: the connected socket as the driver reads and writes it, in the clear (`tcp://`,
//! `ws://`) or through a rustls client session (`tls://`, `wss://`). Non-blocking both ways:
//! `WouldBlock` means what it means on the socket, and records rustls could not write yet
//! go out on the next [`Wire::flush_tls`] (the driver calls it every turn).

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// A connected socket, maybe with its TLS session.
pub struct Wire {
    pub stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Wire {
    /// A plain connection.
    pub fn plain(stream: TcpStream) -> Wire {
        Wire { stream, tls: None }
    }

    /// A TLS connection to `host` (checked against the server's certificate); the handshake
    /// runs as the driver reads and writes.
    pub fn tls(stream: TcpStream, config: Arc<ClientConfig>, host: &str) -> io::Result<Wire> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut wire = Wire {
            stream,
            tls: Some(Box::new(conn)),
        };
        wire.flush_tls()?; // the ClientHello
        Ok(wire)
    }

    /// Plaintext read; `Ok(0)` is the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.stream.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Nothing decrypted waits: more records from the socket (`WouldBlock` passes up).
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            let state = tls.process_new_packets();
            // Handshake answers (or the alert for an error) go out at once.
            write_records(tls, &mut self.stream)?;
            state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }

    /// Plaintext write: taken whole or in part, or `WouldBlock`.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.stream.write(buf);
        }
        self.flush_tls()?;
        let tls = self.tls.as_mut().expect("a TLS wire");
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(buf)?;
        match self.flush_tls() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => other?,
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes the TLS records waiting to go out, until the socket would block.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(tls) => write_records(tls, &mut self.stream),
            None => Ok(()),
        }
    }
}

/// Writes `tls`'s pending records until done or the socket would block.
fn write_records(tls: &mut ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
