//! What every connection machine of one driver thread shares: the limits in ticks, the time
//! of this pass, the scratch buffer reads land in, the encoders, this pass's push arena and
//! pong slots, the accounting of write backlogs, and the queue of events.
//!
//! Invariants: `queued` is the sum of the queued bytes of every machine (its backlog and a
//! completion driver's send in flight), and `backlogged` holds exactly the keys with some;
//! the scratch buffer is empty between two connections' turns; the arena and the pong slots
//! are cleared at the end of every pass, after every machine with bytes in the arena sent
//! them, handed them over or parked them in its backlog.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use switchboard_codec::packet::PacketDecoder;
use switchboard_codec::ws::{FrameEncoder, Server};

use super::super::clock::ticks;
use super::super::config::GatewayConfig;
use super::super::limits::per_ip::PerIpTable;
use super::super::limits::{AllowedOrigins, RateLimit};
use super::super::metrics::Refusal;
use super::super::trusted_proxies::ProxyListeners;
use super::control::{ControlLimit, PongSlots};
use super::outgoing::PushArena;
use super::Event;

/// Messages and control frames decoded per turn of one connection before other connections
/// get theirs: 64 KiB of 14-byte packets would otherwise be 4,700 messages in one turn,
/// against one for each quiet connection (see docs/performance.md, "Hostile clients").
pub(crate) const FRAME_BUDGET: usize = 64;

/// The protocol limits of a gateway, with durations in ticks.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_packet: usize,
    pub(crate) max_message: usize,
    pub(crate) ws_text: bool,
    /// The slow-consumer cap actually applied (see [`write_cap`]).
    pub(crate) write_cap: usize,
    pub(crate) control: ControlLimit,
    /// Messages per connection (`--message-rate`, `--message-burst`, the grace).
    pub(crate) messages: RateLimit,
    /// Origins whose pages may open WebSockets (`None`: any).
    pub(crate) allowed_origins: Option<AllowedOrigins>,
    /// The listeners whose connections open with a PROXY header (`--proxy-protocol`).
    pub(crate) proxy_header: ProxyListeners,
    pub(crate) handshake_ticks: u64,
    pub(crate) read_wait_ticks: u64,
    pub(crate) linger_ticks: u64,
    /// Both listeners speak TLS, with sessions made from this (`--tls-cert`, `--tls-key`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Limits {
    pub(crate) fn new(config: &GatewayConfig) -> Self {
        Limits {
            max_packet: config.max_packet,
            max_message: config.max_message,
            ws_text: config.ws_text,
            write_cap: write_cap(config),
            control: config.control_limit,
            messages: config.message_limit,
            allowed_origins: config.allowed_origins.clone(),
            proxy_header: config.proxy_header_listeners(),
            handshake_ticks: ticks(config.handshake_timeout),
            read_wait_ticks: ticks(config.read_wait),
            linger_ticks: ticks(config.close_linger),
            tls: config.tls.as_ref().map(|tls| tls.server_config()),
        }
    }
}

/// The slow-consumer cap. A cap below the largest message would close every client that is
/// sent one, however fast it reads; two of them leave room for one in flight and one queued.
pub(crate) fn write_cap(config: &GatewayConfig) -> usize {
    let largest = config
        .max_message
        .max(config.max_packet + switchboard_codec::packet::HEADER_LEN);
    config.write_queue_cap.max(largest.saturating_mul(2))
}

/// The shared half of the machines of one driver thread.
pub(crate) struct Workspace {
    pub(crate) limits: Limits,
    /// The tick of this pass, given by the driver.
    pub(super) now: u64,
    /// Where reads are copied and whole frames split from (see the module invariants).
    pub(super) scratch: BytesMut,
    pub(super) packets: PacketDecoder,
    pub(super) frames: FrameEncoder<Server>,
    /// Where handshake responses are written before they are frozen.
    pub(super) responses: BytesMut,
    pub(super) arena: PushArena,
    pub(super) pongs: PongSlots,
    pub(super) events: VecDeque<(usize, Event)>,
    /// Decode budget left to the connection being read (see [`FRAME_BUDGET`]).
    pub(super) frames_left: usize,
    /// Bytes in the backlogs of all machines.
    pub(super) queued: usize,
    /// Keys of the machines with a backlog: where to look for the largest queues.
    pub(super) backlogged: HashSet<usize>,
    /// Bytes read or queued in backlogs since the driver last took this count.
    pub(super) churn: usize,
    /// Connections refused by the machines since the driver last took these counts, by
    /// `Refusal as usize` (the driver publishes them to its metrics block each pass).
    pub(super) refused: [u64; Refusal::ALL.len()],
    /// The gateway's per-IP table when its limits are on: the machine counts its client
    /// after the PROXY header names it (without PROXY, the driver does at accept).
    pub(super) per_ip: Option<Arc<PerIpTable>>,
    /// Where TLS records are decrypted (empty between reads).
    pub(super) tls_records: Vec<u8>,
    /// The plaintext of one read of a TLS connection (empty between reads).
    pub(super) tls_plain: Vec<u8>,
    /// TLS handshakes finished and failed since the driver last took these counts (indexed
    /// by [`TLS_OK`] and [`TLS_FAILED`]).
    pub(super) tls_handshakes: [u64; 2],
}

/// Index of finished handshakes in [`Workspace::take_tls_handshakes`].
pub(crate) const TLS_OK: usize = 0;
/// Index of failed (or timed-out) handshakes in [`Workspace::take_tls_handshakes`].
pub(crate) const TLS_FAILED: usize = 1;

impl Workspace {
    pub(crate) fn new(limits: Limits, now: u64) -> Self {
        let max_packet = u32::try_from(limits.max_packet).unwrap_or(u32::MAX);
        Workspace {
            limits,
            now,
            scratch: BytesMut::new(),
            packets: PacketDecoder::new(max_packet),
            frames: FrameEncoder::new(),
            responses: BytesMut::new(),
            arena: PushArena::default(),
            pongs: PongSlots::default(),
            events: VecDeque::new(),
            frames_left: FRAME_BUDGET,
            queued: 0,
            backlogged: HashSet::new(),
            churn: 0,
            refused: [0; Refusal::ALL.len()],
            per_ip: None,
            tls_records: Vec::new(),
            tls_plain: Vec::new(),
            tls_handshakes: [0; 2],
        }
    }

    /// Shares the gateway's per-IP table (only worth it when its limits are on).
    pub(crate) fn share_per_ip(&mut self, table: Arc<PerIpTable>) {
        self.per_ip = table.is_on().then_some(table);
    }

    /// Starts a pass at tick `now` (never earlier than the last).
    pub(crate) fn set_now(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    /// The next thing a machine asked for, oldest first.
    pub(crate) fn next_event(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// Starts one connection's turn to read: a fresh decode budget.
    pub(crate) fn start_turn(&mut self) {
        self.frames_left = FRAME_BUDGET;
    }

    /// Ends one connection's turn to read: whatever its machine left in the scratch buffer
    /// (nothing, once it took the unfinished frame) is dropped.
    pub(crate) fn end_turn(&mut self) {
        self.scratch.clear();
    }

    /// Whether the connection being read used its decode budget.
    pub(crate) fn budget_spent(&self) -> bool {
        self.frames_left == 0
    }

    /// Bytes in the write backlogs of every machine.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// The keys of the machines holding a backlog.
    pub(crate) fn backlogged(&self) -> impl Iterator<Item = usize> + '_ {
        self.backlogged.iter().copied()
    }

    /// Bytes through the buffers since the last call (for the allocator trim).
    pub(crate) fn take_churn(&mut self) -> usize {
        std::mem::take(&mut self.churn)
    }

    pub(crate) fn churn(&self) -> usize {
        self.churn
    }

    /// Ends a pass: every machine's bytes were sent or parked, the pongs owed were sent.
    pub(crate) fn end_pass(&mut self) {
        self.pongs.clear();
        self.arena.clear();
    }

    /// Counts a connection (or a message) a machine refused.
    pub(super) fn refuse(&mut self, why: Refusal) {
        self.refused[why as usize] += 1;
    }

    /// The refusals counted since the last call, which start again from zero.
    pub(crate) fn take_refused(&mut self) -> [u64; Refusal::ALL.len()] {
        std::mem::take(&mut self.refused)
    }

    /// TLS handshakes finished and failed since the last call ([`TLS_OK`], [`TLS_FAILED`]).
    pub(crate) fn take_tls_handshakes(&mut self) -> [u64; 2] {
        std::mem::take(&mut self.tls_handshakes)
    }

    pub(super) fn push(&mut self, key: usize, event: Event) {
        self.events.push_back((key, event));
    }

    /// One machine's backlog went from `before` to `after` bytes.
    pub(super) fn account(&mut self, key: usize, before: usize, after: usize) {
        self.account_held(key, before, after);
        if after > before {
            self.churn += after - before;
        }
    }

    /// As [`Workspace::account`], for bytes that changed hands without being copied (into
    /// or out of a completion driver's send): no allocation, so only what is let go counts
    /// as churn. Bytes let go are freed memory, which is what the trim hands back: counting
    /// them means a backlog freed after the last trim (a slow consumer cut) brings the next.
    pub(super) fn account_held(&mut self, key: usize, before: usize, after: usize) {
        if before == after {
            return;
        }
        self.churn += before.saturating_sub(after);
        self.queued = self.queued + after - before;
        if before == 0 && after > 0 {
            self.backlogged.insert(key);
        } else if before > 0 && after == 0 {
            self.backlogged.remove(&key);
        }
    }
}
