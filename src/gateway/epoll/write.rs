//! The send stage that ends every pass: each connection with bytes to send gets one `writev`
//! (more only while the kernel takes all it is offered), whatever the sends cause is carried
//! out in the same loop (a connection cut as a slow consumer tells the handler, which may push
//! to others: they are sent at once), then the process-wide budget of queued bytes
//! (`--max-queued-bytes`, `driver_core/budget.rs`) is enforced.

use std::io;

use super::super::handler::Handler;
use super::Reactor;

impl<H: Handler> Reactor<H> {
    pub(super) fn send_stage(&mut self) {
        self.io.sending = true;
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.send(key);
            self.settle();
        }
        self.dirty = dirty; // keep the allocation
        self.publish_queued();
        if self.over_budget() {
            self.shed_largest_queues();
            self.settle();
            self.publish_queued();
        }
        self.io.sending = false;
        self.ws.end_pass();
    }

    /// Writes what the connection has queued, as far as the kernel takes it.
    pub(super) fn send(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let stream = &mut conn.stream;
        let metrics = &self.shared.metrics[self.index];
        conn.machine.send_with(&mut self.ws, key, |slices| {
            let written = write_vectored(stream, slices);
            if let Ok(n) = written {
                metrics.bytes_out.add(n as u64);
            }
            written
        });
        // Under the cap again: input waiting in the socket is read on the next pass.
        if !self.read_paused.is_empty()
            && !conn.machine.over_cap(&self.ws)
            && self.read_paused.remove(&key)
        {
            self.again.push(key);
        }
    }

    pub(super) fn conn_writable(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.machine.backlog_bytes() > 0)
        {
            self.send(key);
            self.settle();
        }
    }
}

/// One `writev`, retried on EINTR.
fn write_vectored(
    stream: &mut mio::net::TcpStream,
    slices: &[io::IoSlice<'_>],
) -> io::Result<usize> {
    use std::io::Write;
    loop {
        match stream.write_vectored(slices) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
