//! The TLS layer of a connection, on rustls's unbuffered API: ciphertext in, plaintext out
//! to the transport's parsers; plaintext in, records out to the connection's send queue.
//! rustls keeps no record buffers of its own here: records are decrypted from the driver's
//! read (through the workspace's scratch) and encrypted into a buffer the size of the
//! message, so an idle TLS connection holds only its keys and session state.
//!
//! Invariants: `partial` holds only the start of a record the last read cut (empty, with
//! no heap, otherwise); `pending_out` holds handshake records (and alerts) produced while
//! reading, for the machine to queue on its next step; after an error the session produces
//! nothing but the alert.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use tracing::{debug, info, warn_span};

use super::super::handler::Disconnect;
use super::state::Phase;
use super::workspace::{TLS_FAILED, TLS_OK};
use super::{Machine, Workspace};

/// Bytes of room added per record when encrypting: a record's header, explicit nonce, tag and
/// content type take at most this (TLS 1.2 GCM: 5 + 8 + 16; TLS 1.3: 5 + 16 + 1).
const RECORD_OVERHEAD: usize = 32;
/// Largest plaintext of one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// What the TLS layer's news meant for the machine's decoding (see [`Machine::tls_step`]).
pub(super) enum TlsStep {
    /// Nothing to stop for: decode the plaintext held.
    Continue,
    /// The handshake finished and the transport began: deliver its events first.
    Progressed,
    /// The connection is closing: decode nothing.
    Stop,
}

/// One connection's TLS session.
pub(super) struct TlsSession {
    conn: UnbufferedServerConnection,
    /// The start of a record cut by the read that brought it.
    partial: Vec<u8>,
    /// Handshake records and alerts to send.
    pending_out: Vec<u8>,
    /// The handshake finished and the machine has been told.
    established: bool,
    /// Ciphertext has arrived: the client began a handshake.
    started: bool,
    /// The first error, kept so it is reported once with the peer.
    failed: Option<rustls::Error>,
}

impl TlsSession {
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            pending_out: Vec::new(),
            established: false,
            started: false,
            failed: None,
        })
    }

    /// Bytes held between reads (the start of a cut record).
    pub(super) fn held_bytes(&self) -> usize {
        self.partial.capacity() + self.pending_out.capacity()
    }

    /// Takes the error the session failed with, once.
    pub(super) fn take_error(&mut self) -> Option<rustls::Error> {
        self.failed.take()
    }

    /// Takes the handshake records (or alert) waiting to be sent.
    pub(super) fn take_pending_out(&mut self) -> Option<Bytes> {
        if self.pending_out.is_empty() {
            None
        } else {
            Some(Bytes::from(std::mem::take(&mut self.pending_out)))
        }
    }

    /// Whether the handshake completed since the last call (true once).
    pub(super) fn take_established(&mut self) -> bool {
        if self.established || self.failed.is_some() || self.conn.is_handshaking() {
            return false;
        }
        self.established = true;
        true
    }

    /// Ciphertext from `peer`: plaintext is appended to `plain`; `scratch` is the
    /// workspace's buffer records are decrypted in. Errors are kept (see [`Self::take_error`]).
    pub(super) fn read(
        &mut self,
        peer: SocketAddr,
        ciphertext: &[u8],
        scratch: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) {
        if self.failed.is_some() {
            return;
        }
        self.started |= !ciphertext.is_empty();
        // The records are processed in place: in the connection's own buffer if it holds the
        // start of one, else in the shared scratch, whose rest then moves into the connection.
        let own = !self.partial.is_empty();
        let mut buf = if own {
            let mut partial = std::mem::take(&mut self.partial);
            partial.extend_from_slice(ciphertext);
            partial
        } else {
            let mut buf = std::mem::take(scratch);
            buf.clear();
            buf.extend_from_slice(ciphertext);
            buf
        };
        // rustls logs what it refuses (a TLS 1.2 renegotiation is a warning alert it sends)
        // without knowing the peer: a span gives its line the peer. Only around the handshake
        // and records other than application data, so the hot path makes no span.
        let _peer = (!self.established || !only_application_data(&buf))
            .then(|| warn_span!("tls", %peer).entered());
        self.process(&mut buf, plain);
        if own {
            if buf.is_empty() {
                buf = Vec::new();
            } else {
                buf.shrink_to_fit();
            }
            self.partial = buf;
        } else {
            if !buf.is_empty() && self.failed.is_none() {
                self.partial = buf.clone();
            }
            buf.clear();
            *scratch = buf;
        }
    }

    fn process(&mut self, buf: &mut Vec<u8>, plain: &mut Vec<u8>) {
        // What rustls asked to discard, taken off the front once at the end: the next call
        // sees the same bytes from the rest of the buffer, without a move per record.
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut buf[consumed..]);
            let more = match state {
                Err(e) => {
                    self.failed = Some(e);
                    false
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => plain.extend_from_slice(record.payload),
                            Err(e) => {
                                self.failed = Some(e);
                                break;
                            }
                        }
                    }
                    self.failed.is_none()
                }
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    // Early data is not enabled (max_early_data_size is 0); drained for safety.
                    while early.next_record().is_some() {}
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.pending_out, |out| encode.encode(out));
                    true
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // What was encoded waits in `pending_out` for the machine to queue.
                    transmit.done();
                    true
                }
                Ok(ConnectionState::PeerClosed) => true,
                Ok(ConnectionState::BlockedHandshake)
                | Ok(ConnectionState::WriteTraffic(_))
                | Ok(ConnectionState::Closed) => false,
                Ok(_) => false,
            };
            consumed += discard;
            if !more {
                break;
            }
        }
        buf.drain(..consumed);
        if self.failed.is_some() {
            // The alert rustls queued for the error, if any.
            self.drain_handshake_out();
        }
    }

    /// After an error: what rustls still has to send (its alert).
    fn drain_handshake_out(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.pending_out, |out| encode.encode(out));
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => break,
            }
        }
    }

    /// Encrypts `plaintext` (any length: split into records) into a buffer of its own.
    /// `None` when the session cannot send (not established, or failed).
    pub(super) fn seal(&mut self, plaintext: &[u8]) -> Option<Bytes> {
        let mut out = Vec::new();
        let room = sealed_len(plaintext.len());
        self.write_traffic(&mut out, room, |traffic, buf| {
            traffic.encrypt(plaintext, buf)
        })?;
        Some(Bytes::from(out))
    }

    /// The close_notify alert, encrypted. `None` when the session cannot send.
    pub(super) fn close_notify(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        self.write_traffic(&mut out, RECORD_OVERHEAD * 2, |traffic, buf| {
            traffic.queue_close_notify(buf)
        })?;
        Some(Bytes::from(out))
    }

    /// Runs the session to its write state (encoding any handshake records it still owes,
    /// such as a session ticket or a key update, into `out` first) and writes with `write`.
    fn write_traffic(
        &mut self,
        out: &mut Vec<u8>,
        mut room: usize,
        mut write: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
    ) -> Option<()> {
        if !self.established || self.failed.is_some() {
            return None;
        }
        // The start of a cut record goes along: rustls must see the same buffer prefix.
        let mut held = std::mem::take(&mut self.partial);
        let mut result = None;
        for _ in 0..8 {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut held);
            debug_assert_eq!(discard, 0, "a partial record cannot be consumed");
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(out, |buf| encode.encode(buf));
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let start = out.len();
                    loop {
                        out.resize(start + room, 0);
                        match write(&mut traffic, &mut out[start..]) {
                            Ok(n) => {
                                out.truncate(start + n);
                                result = Some(());
                                break;
                            }
                            Err(EncryptError::InsufficientSize(e)) if e.required_size > room => {
                                room = e.required_size;
                            }
                            Err(_) => {
                                out.truncate(start);
                                break;
                            }
                        }
                    }
                    break;
                }
                _ => break,
            }
        }
        self.partial = held;
        result
    }
}

impl Machine {
    /// The peer ended the stream (or reset it) in the middle of the TLS handshake: a failed
    /// handshake, once the client began one. A connect-and-close with no byte (a balancer's
    /// TCP check) made no handshake and is not counted.
    pub(super) fn tls_handshake_cut(&mut self, ws: &mut Workspace, by: &str) {
        if self.tls.as_ref().is_some_and(|tls| tls.started) {
            ws.tls_handshakes[TLS_FAILED] += 1;
            info!(peer = %self.peer, "closing connection: TLS handshake cut by {by}");
        }
    }

    /// Acts on what the TLS layer said while reading: records to send, an error (the
    /// connection closes after the alert, logged with the peer), the end of the handshake
    /// (the transport begins).
    pub(super) fn tls_step(&mut self, ws: &mut Workspace, key: usize) -> TlsStep {
        let Some(tls) = self.tls.as_mut() else {
            return TlsStep::Continue;
        };
        let records = tls.take_pending_out();
        let error = tls.take_error();
        let established = tls.take_established();
        if let Some(records) = records {
            self.queue_raw(ws, key, records);
        }
        if let Some(error) = error {
            if self.phase == Phase::TlsHandshake {
                ws.tls_handshakes[TLS_FAILED] += 1;
                info!(peer = %self.peer, %error, "closing connection: TLS handshake failed");
            } else {
                info!(peer = %self.peer, %error, "closing connection: TLS error");
            }
            self.notify(ws, key, Disconnect::Protocol(format!("TLS: {error}")));
            self.start_flushing(ws, key);
            return TlsStep::Stop;
        }
        if established {
            ws.tls_handshakes[TLS_OK] += 1;
            if let Some(tls) = self.tls.as_ref() {
                debug!(peer = %self.peer, version = ?tls.conn.protocol_version(),
                    kind = ?tls.conn.handshake_kind(), "TLS handshake done");
            }
            self.begin_transport(ws, key);
            return TlsStep::Progressed;
        }
        TlsStep::Continue
    }
}

/// Whether every whole record header in `records` says application data (23), the only
/// content type of an established TLS 1.3 session and of a TLS 1.2 one that is not being
/// asked to renegotiate or alerted.
fn only_application_data(records: &[u8]) -> bool {
    let mut at = 0;
    while let Some(header) = records.get(at..at + 5) {
        if header[0] != 23 {
            return false;
        }
        at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    true
}

/// Room to give `encrypt` for `len` bytes of plaintext.
fn sealed_len(len: usize) -> usize {
    len + RECORD_OVERHEAD * (len / MAX_FRAGMENT + 1)
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks for.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let start = out.len();
    let mut room = 4096;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return;
            }
            Err(EncodeError::InsufficientSize(e)) if e.required_size > room => {
                room = e.required_size;
            }
            Err(_) => {
                out.truncate(start);
                return;
            }
        }
    }
}
