//! The read path of the driver: socket bytes into the read window, then into the connection's
//! machine, one frame at a time with the events of each carried out before the next. A
//! connection gets a share of each pass: [`READ_BUDGET`] reads, [`READ_BYTES_BUDGET`] bytes
//! and the machine's decode budget; one that used its share waits for the next pass, so one
//! flooding client cannot starve the others.

use std::io::{self, Read};

use tracing::debug;

use super::super::handler::Handler;
use super::Reactor;

/// Reads per readiness event before other connections get their turn.
const READ_BUDGET: usize = 16;
/// Bytes per readiness event before other connections get their turn: with the read count
/// alone, a connection that always has input could take 16 × 64 KiB per turn.
const READ_BYTES_BUDGET: usize = 64 << 10;
/// The most one `read` takes. Reads land in a window of this size, initialised once, and only
/// the bytes that arrived are copied on: zeroing a fresh window per read (what safe code must do
/// to read straight into a `BytesMut`) cost more instructions than everything else the reactor
/// did for a small message (callgrind under loadtest: 77 %).
pub(super) const READ_WINDOW: usize = 64 << 10;

impl<H: Handler> Reactor<H> {
    /// Reads what the connection has, within its share of the pass; frames already read but
    /// left undecoded by the last turn's budget go first. A connection that holds more than
    /// the slow-consumer cap is not read until a send brings it back under (or cuts it).
    ///
    /// A read that returns less than it asked for emptied the socket's receive queue, and
    /// edge-triggered epoll reports the next arrival, so the read that would only say "would
    /// block" is skipped: one system call per message saved. Not when `until_eof`: the peer's
    /// FIN came with the event and must be read to be seen.
    pub(super) fn conn_readable(&mut self, key: usize, until_eof: bool) {
        self.ws.start_turn();
        if !self.conns.contains(key) {
            return;
        }
        if !self.input_allowed() {
            // Read when the handler has room; an end of stream is seen then too.
            self.unread.insert(key);
            return;
        }
        if self.conns[key].machine.has_input() {
            self.decode(key);
            if self.ws.budget_spent() {
                self.again.push(key);
                return;
            }
        }
        let mut bytes = 0;
        for _ in 0..READ_BUDGET {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.machine.over_cap(&self.ws) {
                // The send stage of this pass judges it (and most likely cuts it).
                self.read_paused.insert(key);
                conn.machine.mark_dirty(&mut self.ws, key);
                self.settle();
                return;
            }
            let read = loop {
                match conn.stream.read(&mut self.io.read_window) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match read {
                Ok(0) => {
                    conn.machine.on_eof(&mut self.ws, key);
                    self.settle();
                    return;
                }
                Ok(n) => {
                    self.shared.metrics[self.index].bytes_in.add(n as u64);
                    bytes += n;
                    conn.machine
                        .on_bytes(&mut self.ws, &self.io.read_window[..n]);
                    self.decode(key);
                    if self.ws.budget_spent() || bytes >= READ_BYTES_BUDGET {
                        break;
                    }
                    if n < READ_WINDOW && !until_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(peer = %conn.machine.peer(), error = %e, "read failed");
                    conn.machine.on_read_error(&mut self.ws, key, e.kind());
                    self.settle();
                    return;
                }
            }
        }
        if self.conns.contains(key) {
            self.again.push(key);
        }
    }

    /// Decodes what the connection's machine holds, one frame at a time, carrying out each
    /// frame's events (the handler's answer to a message goes out before the next frame is
    /// looked at), then ends its turn.
    fn decode(&mut self, key: usize) {
        while let Some(conn) = self.conns.get_mut(key) {
            if !conn.machine.poll_input(&mut self.ws, key) {
                break;
            }
            self.settle();
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.machine.end_input(&mut self.ws);
        }
        self.ws.end_turn();
        self.settle();
    }

    /// Accepts that were cut short, and a second turn for the connections that used their
    /// share last pass (`waiting`, taken before this pass's events). A connection that used its
    /// share again in this pass's events is already waiting for the next pass and gets no
    /// second turn now: one busy connection gets at most two turns per pass, however long it
    /// stays busy (without this, each pass queued it once more, and its turns per pass grew
    /// without bound).
    pub(super) fn revisit(&mut self, mut waiting: Vec<usize>) {
        self.accept_pending();
        if waiting.is_empty() {
            return;
        }
        waiting.sort_unstable();
        waiting.dedup();
        // Taken out, not copied, for the loop (its reads may queue keys again); put back after.
        let mut turned = std::mem::take(&mut self.again);
        turned.sort_unstable();
        for key in waiting {
            if turned.binary_search(&key).is_err() {
                self.conn_readable(key, false);
            }
        }
        turned.append(&mut self.again);
        self.again = turned;
    }
}
