//! `idle_memory --tls`: the run's own self-signed certificate (rcgen), handed to the server
//! as --tls-cert/--tls-key, and the clients that open each connection with a full TLS
//! handshake (rustls) before the same one echo as the plain run. After the echo the client
//! drops its TLS state and keeps only the socket: the server's side is what is measured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use switchboard_codec::packet::{PacketEncoder, HEADER_LEN};
use switchboard_codec::ws::handshake::{ClientHandshake, ClientRequest};
use switchboard_codec::ws::{Client, FrameEncoder, Message, MessageReader, OpCode, ReaderConfig};
use switchboard_codec::Decoded;

use super::{random_bytes, BoxError, ECHO_COMMAND, PAYLOAD};

/// The certificate files (in a directory removed when this is dropped) and the client
/// configuration that trusts them.
pub(super) struct TlsSetup {
    _dir: tempfile::TempDir,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    client: Arc<ClientConfig>,
}

impl TlsSetup {
    pub(super) fn new() -> Result<TlsSetup, BoxError> {
        let dir = tempfile::tempdir()?;
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
        let cert = dir.path().join("idle.crt");
        let key = dir.path().join("idle.key");
        std::fs::write(&cert, certified.cert.pem())?;
        std::fs::write(&key, certified.key_pair.serialize_pem())?;
        let mut roots = RootCertStore::empty();
        roots.add(certified.cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSetup {
            _dir: dir,
            cert,
            key,
            client: Arc::new(client),
        })
    }

    fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, BoxError> {
        let conn = ClientConnection::new(self.client.clone(), ServerName::try_from("localhost")?)?;
        let mut tls = StreamOwned::new(conn, stream);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// A framed-TCP connection over TLS that echoed one packet; the socket it holds.
    pub(super) fn open_tcp(&self, stream: TcpStream) -> Result<TcpStream, BoxError> {
        let mut tls = self.handshake(stream)?;
        let mut packet = BytesMut::new();
        PacketEncoder::new().encode_into(ECHO_COMMAND, PAYLOAD, &mut packet)?;
        tls.write_all(&packet)?;
        let mut echo = vec![0u8; HEADER_LEN + PAYLOAD.len()];
        tls.read_exact(&mut echo)?;
        if echo != packet.as_ref() {
            return Err("the TLS TCP echo differs from the packet sent".into());
        }
        Ok(tls.sock)
    }

    /// A WebSocket over TLS that echoed one binary message; the socket it holds.
    pub(super) fn open_ws(
        &self,
        stream: TcpStream,
        server: SocketAddr,
    ) -> Result<TcpStream, BoxError> {
        let mut tls = self.handshake(stream)?;
        let host = server.to_string();
        let mut out = BytesMut::new();
        let mut handshake =
            ClientHandshake::start(&ClientRequest::new(&host, "/"), random_bytes(), &mut out)?;
        tls.write_all(&out)?;
        let mut buf = BytesMut::new();
        read_until(&mut tls, &mut buf, |buf| {
            Ok(matches!(handshake.decode(buf)?, Decoded::Complete(_)))
        })?;
        out.clear();
        FrameEncoder::<Client>::new().encode_masked(
            OpCode::Binary,
            true,
            PAYLOAD,
            random_bytes(),
            &mut out,
        );
        tls.write_all(&out)?;
        let mut reader = MessageReader::<Client>::new(ReaderConfig::default());
        let mut echoed = false;
        read_until(&mut tls, &mut buf, |buf| {
            Ok(match reader.read(buf)? {
                Decoded::Complete(Message::Binary(payload)) => {
                    echoed = payload.as_ref() == PAYLOAD;
                    true
                }
                Decoded::Complete(_) => true,
                Decoded::NeedMore => false,
            })
        })?;
        if !echoed {
            return Err("unexpected WebSocket echo over TLS".into());
        }
        Ok(tls.sock)
    }
}

fn read_until(
    stream: &mut impl Read,
    buf: &mut BytesMut,
    mut done: impl FnMut(&mut BytesMut) -> Result<bool, BoxError>,
) -> Result<(), BoxError> {
    let mut chunk = [0u8; 1024];
    while !done(buf)? {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed a connection during setup".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}
