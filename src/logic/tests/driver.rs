//! The driver's pause (`logic/driver.rs`): while the outlet holds pushes its gateway had no
//! room for, the core handles no further input, not even the rest of the batch it is in, and
//! resumes once the outlet has handed them over. Runs `LogicCore::run` on the test's thread
//! over channels filled beforehand; it returns when the input is disconnected and handled.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use switchboard_protocol::Request;

use super::{config, FakeStore, StoreState};
use crate::logic::{CloseWhy, Inbound, LogicCore, Outlet};

/// What the gated outlet saw, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Push(u64),
    Close(u64),
    /// A flush while holding.
    HeldFlush,
}

/// An outlet that holds after each push until it has been flushed `FLUSHES_TO_ROOM` times.
struct GatedOutlet {
    seen: Rc<RefCell<Vec<Seen>>>,
    flushes_left: usize,
}

const FLUSHES_TO_ROOM: usize = 3;

impl Outlet for GatedOutlet {
    fn push(&mut self, conn: u64, _packet: Bytes) {
        self.seen.borrow_mut().push(Seen::Push(conn));
        self.flushes_left = FLUSHES_TO_ROOM;
    }

    fn close(&mut self, conn: u64, _why: CloseWhy) {
        self.seen.borrow_mut().push(Seen::Close(conn));
    }

    fn flush(&mut self) {
        if self.flushes_left > 0 {
            self.flushes_left -= 1;
            self.seen.borrow_mut().push(Seen::HeldFlush);
        }
    }

    fn holding(&self) -> bool {
        self.flushes_left > 0
    }
}

fn ping() -> Bytes {
    let mut packet = BytesMut::new();
    Request::Ping.encode(1, &mut packet).expect("encodable");
    packet.freeze()
}

#[test]
fn a_holding_outlet_stops_the_core_in_the_middle_of_its_batch_until_it_has_handed_over() {
    let store = Rc::new(RefCell::new(StoreState {
        queued: VecDeque::new(),
        capacity: 16,
        stopped: false,
    }));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let outlet = GatedOutlet {
        seen: seen.clone(),
        flushes_left: 0,
    };
    let core = LogicCore::new(config(), FakeStore(store), Vec::new(), outlet).expect("a core");
    let peer = ([192, 0, 2, 1], 40000).into();
    // One batch: two connections that each send a request before logging in, answered
    // NOT_LOGGED_IN (a push) and closed.
    let batch = vec![
        Inbound::Opened(1, peer),
        Inbound::Opened(2, peer),
        Inbound::Packet(1, ping()),
        Inbound::Packet(2, ping()),
    ];
    let (input, inbound) = crossbeam_channel::unbounded();
    input.send(batch).unwrap();
    // The next batch is taken only once the outlet has handed everything over.
    input
        .send(vec![Inbound::Opened(3, peer), Inbound::Packet(3, ping())])
        .unwrap();
    drop(input);
    let (_completions_in, completions) = crossbeam_channel::unbounded();
    core.run(inbound, completions);

    // Each answer's close is decided with it, before the outlet's hold is looked at.
    let mut expected = Vec::new();
    for conn in 1..=3 {
        expected.extend([Seen::Push(conn), Seen::Close(conn)]);
        expected.extend([Seen::HeldFlush; FLUSHES_TO_ROOM]);
    }
    assert_eq!(*seen.borrow(), expected);
}
