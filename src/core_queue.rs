//! The queue from the reactors to the logic core, bounded in bytes, on which neither side waits.
//!
//! Each reactor's handler hands the core its connections' events in batches. A batch is
//! admitted only while the bytes queued (admitted and not yet handled by the core) leave room
//! for it; an empty queue admits any one batch, so a batch larger than the bound cannot be
//! refused forever. A refused handler keeps its batch, tells its reactor to stop reading
//! (`Handler::wants_input`) and is noted as waiting. When the core has handled a batch (drops
//! it), its bytes are released and every waiting reactor is woken through the gateway's
//! handle to try again.
//!
//! Invariant: a reactor noted as waiting is woken by the next release; a handler that finds
//! no room notes itself before it looks at the count again, and a release lowers the count
//! before it looks at the notes, so one of the two always sees the other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use crate::gateway::byte_bound::{lock, try_reserve};
use crate::gateway::GatewayHandle;
use crate::logic::backend::{BackendCall, BackendRequest};
use crate::logic::Inbound;

/// What an event costs in the queue: its payload and the event itself.
pub fn event_bytes(event: &Inbound) -> usize {
    let payload = match event {
        Inbound::Packet(_, packet) => packet.len(),
        Inbound::Backend(call) => backend_bytes(&call.request),
        Inbound::ReloadGroups(groups) => groups
            .iter()
            .map(|g| g.name.len() + g.members.iter().map(|m| m.len() + 16).sum::<usize>())
            .sum(),
        Inbound::Opened(..)
        | Inbound::Closed(_)
        | Inbound::Drain(_)
        | Inbound::HandOver(_)
        | Inbound::HandOverWithdrawn
        | Inbound::Shutdown(_) => 0,
    };
    std::mem::size_of::<Inbound>() + payload
}

/// What a backend call holds beyond the event itself.
fn backend_bytes(request: &BackendRequest) -> usize {
    let call = std::mem::size_of::<BackendCall>();
    call + match request {
        BackendRequest::Send { from, body, .. } => from.len() + body.len(),
        BackendRequest::Kick { user, device } => {
            user.len() + device.as_ref().map_or(0, String::len)
        }
        BackendRequest::Devices { user } => user.len(),
        BackendRequest::Stats => 0,
    }
}

/// The sending side, shared by every reactor's handler.
#[derive(Clone)]
pub struct CoreQueue {
    budget: Arc<Budget>,
    sender: Sender<CoreBatch>,
}

struct Budget {
    limit: usize,
    queued: AtomicUsize,
    /// Reactors refused since the last release, to wake.
    waiting: Mutex<Vec<usize>>,
    any_waiting: AtomicBool,
    /// Set once the gateway has started (its handlers are made before its handle exists).
    handle: OnceLock<GatewayHandle>,
    /// The reactor whose thread runs the core, if it has none of its own: woken by every send.
    core_reactor: OnceLock<usize>,
}

/// Events from one reactor, handed to the core. Their bytes leave the queue's count when the
/// core drops the batch (or the iterator it turned into), i.e. once it has handled them.
pub struct CoreBatch {
    events: Vec<Inbound>,
    credit: Credit,
}

struct Credit {
    bytes: usize,
    budget: Option<Arc<Budget>>,
}

impl CoreQueue {
    /// A queue that holds at most `limit` bytes of events (one batch more when empty).
    pub fn new(limit: usize) -> (CoreQueue, Receiver<CoreBatch>) {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let budget = Arc::new(Budget {
            limit,
            queued: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            any_waiting: AtomicBool::new(false),
            handle: OnceLock::new(),
            core_reactor: OnceLock::new(),
        });
        (CoreQueue { budget, sender }, receiver)
    }

    /// Where waiting reactors are woken. Before this is called, no reactor can be woken, so
    /// call it right after the gateway starts.
    pub fn attach(&self, handle: GatewayHandle) {
        let _ = self.budget.handle.set(handle);
        // A reactor refused before the handle existed is woken now.
        self.budget.wake_waiting();
        self.budget.wake_core();
    }

    /// The core runs on reactor `reactor`'s thread and takes its queue there, in the
    /// reactor's passes (`serve` with one reactor, by default): every batch sent from now on
    /// wakes that reactor (once [`CoreQueue::attach`] has given the handle).
    pub fn core_on_reactor(&self, reactor: usize) {
        let _ = self.budget.core_reactor.set(reactor);
    }

    /// Hands `events` (costing `bytes`, see [`event_bytes`]) to the core if they fit; if not,
    /// gives them back and notes `reactor` to be woken when room frees up. Never blocks.
    /// If the core has exited, the events are dropped (the process is shutting down).
    pub fn try_send(
        &self,
        reactor: usize,
        events: Vec<Inbound>,
        bytes: usize,
    ) -> Result<(), Vec<Inbound>> {
        if !self.budget.reserve(bytes) {
            self.budget.note_waiting(reactor);
            if !self.budget.reserve(bytes) {
                return Err(events);
            }
        }
        let batch = CoreBatch {
            events,
            credit: Credit {
                bytes,
                budget: Some(self.budget.clone()),
            },
        };
        let _ = self.sender.send(batch);
        self.budget.wake_core();
        Ok(())
    }

    /// Hands `events` to the core outside the bound (the shutdown notice: one small batch).
    /// False if the core has exited.
    pub fn send_unmetered(&self, events: Vec<Inbound>) -> bool {
        let batch = CoreBatch {
            events,
            credit: Credit {
                bytes: 0,
                budget: None,
            },
        };
        let sent = self.sender.send(batch).is_ok();
        self.budget.wake_core();
        sent
    }

    /// Hands `event` to the core if it fits, from a thread that is not a reactor (the admin
    /// listener): a refusal is final, nobody is woken later. Never blocks.
    pub fn try_send_one(&self, event: Inbound) -> Result<(), Inbound> {
        let bytes = event_bytes(&event);
        if !self.budget.reserve(bytes) {
            return Err(event);
        }
        let batch = CoreBatch {
            events: vec![event],
            credit: Credit {
                bytes,
                budget: Some(self.budget.clone()),
            },
        };
        let _ = self.sender.send(batch);
        self.budget.wake_core();
        Ok(())
    }

    /// Bytes admitted and not yet handled by the core.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued.load(Ordering::SeqCst)
    }
}

impl Budget {
    fn reserve(&self, bytes: usize) -> bool {
        try_reserve(&self.queued, bytes, self.limit)
    }

    fn note_waiting(&self, reactor: usize) {
        let mut waiting = lock(&self.waiting);
        if !waiting.contains(&reactor) {
            waiting.push(reactor);
        }
        self.any_waiting.store(true, Ordering::SeqCst);
    }

    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::SeqCst);
        self.wake_waiting();
    }

    fn wake_core(&self) {
        if let (Some(&reactor), Some(handle)) = (self.core_reactor.get(), self.handle.get()) {
            handle.wake(reactor);
        }
    }

    fn wake_waiting(&self) {
        if !self.any_waiting.load(Ordering::SeqCst) {
            return;
        }
        let Some(handle) = self.handle.get() else {
            return;
        };
        if !self.any_waiting.swap(false, Ordering::SeqCst) {
            return;
        }
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        for reactor in waiting {
            handle.wake(reactor);
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.release(self.bytes);
        }
    }
}

impl CoreBatch {
    /// The events, in the order they happened.
    pub fn events(&self) -> &[Inbound] {
        &self.events
    }
}

/// The events of a batch, holding its bytes in the queue's count until dropped.
pub struct CoreBatchIter {
    events: std::vec::IntoIter<Inbound>,
    _credit: Credit,
}

impl Iterator for CoreBatchIter {
    type Item = Inbound;

    fn next(&mut self) -> Option<Inbound> {
        self.events.next()
    }
}

impl IntoIterator for CoreBatch {
    type Item = Inbound;
    type IntoIter = CoreBatchIter;

    fn into_iter(self) -> CoreBatchIter {
        CoreBatchIter {
            events: self.events.into_iter(),
            _credit: self.credit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(len: usize) -> Inbound {
        Inbound::Packet(1, Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn a_batch_that_does_not_fit_is_given_back_and_fits_once_the_core_handled_one() {
        let cost = event_bytes(&packet(1000));
        let (queue, receiver) = CoreQueue::new(2 * cost);
        assert!(queue.try_send(0, vec![packet(1000)], cost).is_ok());
        assert!(queue.try_send(0, vec![packet(1000)], cost).is_ok());
        let refused = queue.try_send(1, vec![packet(1000)], cost);
        assert_eq!(refused.map_err(|events| events.len()), Err(1));
        assert_eq!(queue.queued_bytes(), 2 * cost);
        // The core takes a batch: its bytes count until it has handled (dropped) it.
        let batch = receiver.try_recv().unwrap();
        let events: Vec<Inbound> = batch.into_iter().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(queue.queued_bytes(), cost);
        assert!(queue.try_send(1, vec![packet(1000)], cost).is_ok());
    }

    #[test]
    fn an_empty_queue_admits_one_batch_larger_than_its_bound() {
        let (queue, receiver) = CoreQueue::new(10);
        let cost = event_bytes(&packet(5000));
        assert!(queue.try_send(0, vec![packet(5000)], cost).is_ok());
        assert!(queue.try_send(0, vec![packet(1)], 1).is_err());
        drop(receiver.try_recv().unwrap());
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[test]
    fn a_release_wakes_every_reactor_that_was_refused() {
        let mut poll = mio::Poll::new().unwrap();
        let token = mio::Token(7);
        let waker = mio::Waker::new(poll.registry(), token).unwrap();
        let config = crate::gateway::GatewayConfig::default();
        let (handle, _receivers) = GatewayHandle::new(
            vec![crate::gateway::handle::Waker::Mio(waker)],
            config.inbox_bytes,
        );
        let (queue, receiver) = CoreQueue::new(100);
        queue.attach(handle);
        assert!(queue.try_send(0, vec![packet(200)], 300).is_ok());
        assert!(queue.try_send(0, vec![packet(1)], 50).is_err());
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        assert!(events.is_empty(), "no wake before room frees up");
        drop(receiver.try_recv().unwrap());
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == token));
    }
}
