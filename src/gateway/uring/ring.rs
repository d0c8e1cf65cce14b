//! A reactor's ring as the driver uses it: the only place outside `buf_ring.rs` that hands the
//! kernel pointers into our memory.
//!
//! Invariants (what makes the safe methods below safe):
//! - Every buffer a submitted operation points at is owned by this `Ring` until the operation's
//!   last completion is reaped: the bytes and `iovec`s of a send live in `sends[key]` from
//!   [`Ring::send`] until [`Ring::sent`] hands them back, and the eventfd read lands in a box
//!   the ring owns. Nothing else the kernel is told about is a pointer.
//! - At most one send per connection key is in flight (`sends[key]` is `Some` meanwhile).
//! - On drop, everything still in flight is cancelled and waited for (a bounded time); what
//!   does not complete by then is leaked, never freed under the kernel.
//! - Registered files: slot `key` of the ring's sparse file table holds connection `key`'s
//!   socket from [`Ring::install_file`] until [`Ring::remove_file`], both queued as
//!   `IORING_OP_FILES_UPDATE` entries ahead of whatever uses the slot (entries are issued in
//!   order, and an update is carried out while it is issued). The descriptors an update reads
//!   sit in `file_updates`, which is reused only once the submission queue is empty, that is
//!   once the kernel has issued every entry that points into it. The table holds its own
//!   reference to each socket: the socket closes when both our descriptor is closed and its
//!   slot emptied.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Where an operation finds its socket: by descriptor, or by its slot in the ring's table of
/// registered files (`IOSQE_FIXED_FILE`), which spares the kernel a descriptor lookup and a
/// reference count per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileRef {
    Fd(RawFd),
    Fixed(u32),
}

/// Builds an entry with `$file` as its `types::Fd` or `types::Fixed`.
macro_rules! on_file {
    ($file:expr, |$f:ident| $build:expr) => {
        match $file {
            FileRef::Fd(fd) => {
                let $f = types::Fd(fd);
                $build
            }
            FileRef::Fixed(slot) => {
                let $f = types::Fixed(slot);
                $build
            }
        }
    };
}

/// Descriptor updates that may be queued before the queue is submitted.
const FILE_UPDATES: usize = 64;

/// A send the kernel is working on: the owned bytes and the vector that points at them.
struct Send {
    bytes: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

/// One reactor's ring and the memory its operations point into.
pub(crate) struct Ring {
    ring: IoUring,
    /// The send in flight for each connection key, if any.
    sends: Vec<Option<Box<Send>>>,
    in_flight_sends: usize,
    /// Where the eventfd read lands (its value is not used: the read is the wake-up).
    wake_buf: Box<u64>,
    wake_in_flight: bool,
    /// Vectors of finished sends, kept for the next (one allocation per send saved). Boxed:
    /// a box moves between here and `sends` (8 bytes a connection slot) without reallocating.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Send>>,
    /// Slots in the table of registered files (0: none registered).
    file_slots: u32,
    /// The descriptors queued updates of the file table read (see the module's invariants).
    file_updates: Box<[RawFd; FILE_UPDATES]>,
    file_updates_used: usize,
}

impl Ring {
    pub(crate) fn new(ring: IoUring) -> Ring {
        Ring {
            ring,
            sends: Vec::new(),
            in_flight_sends: 0,
            wake_buf: Box::new(0),
            wake_in_flight: false,
            spare: Vec::new(),
            file_slots: 0,
            file_updates: Box::new([-1; FILE_UPDATES]),
            file_updates_used: 0,
        }
    }

    /// Registers an empty table of `slots` files (`IORING_REGISTER_FILES_SPARSE`, Linux 5.19).
    pub(crate) fn register_files(&mut self, slots: u32) -> io::Result<()> {
        self.ring.submitter().register_files_sparse(slots)?;
        self.file_slots = slots;
        Ok(())
    }

    /// Puts `fd` in slot `slot` of the file table, if the table has that slot: operations
    /// queued after this may use `FileRef::Fixed(slot)`. Returns whether it did.
    pub(crate) fn install_file(&mut self, slot: usize, fd: RawFd, user_data: u64) -> bool {
        if slot >= self.file_slots as usize {
            return false;
        }
        self.update_file(slot as u32, fd, user_data);
        true
    }

    /// Empties slot `slot` of the file table (the table's reference to the socket goes).
    pub(crate) fn remove_file(&mut self, slot: usize, user_data: u64) {
        self.update_file(slot as u32, -1, user_data);
    }

    fn update_file(&mut self, slot: u32, fd: RawFd, user_data: u64) {
        if self.file_updates_used == FILE_UPDATES {
            self.submit_all();
        }
        let index = self.file_updates_used;
        self.file_updates[index] = fd;
        self.file_updates_used += 1;
        let entry = opcode::FilesUpdate::new(&self.file_updates[index], 1)
            .offset(slot as i32)
            .build()
            // Only a failure completes: success needs no reaping.
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data);
        self.push(&entry);
    }

    /// Submits until the submission queue is empty; then no queued entry points into
    /// `file_updates` any more.
    fn submit_all(&mut self) {
        while !self.ring.submission().is_empty() {
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::warn!(error = %e, "io_uring submit failed");
                }
                self.reap_overflow();
            }
        }
        self.file_updates_used = 0;
    }

    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// Queues `entry`, submitting what is queued first if the submission queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry built in this module points only at memory this `Ring` owns
            // until the operation's completion (see the module's invariants) or at nothing.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel. EBUSY (completions overflowed) means
            // the kernel holds them for us; the loop retries once they are reaped.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::warn!(error = %e, "io_uring submit failed");
                }
                self.reap_overflow();
            }
        }
    }

    /// Lets the kernel flush completions it holds back (only used when the submission queue
    /// is full and the kernel refuses more: the completions are left in the queue).
    fn reap_overflow(&mut self) {
        let _ = self.ring.submitter().submit_and_wait(0);
    }

    /// A multishot accept on `listener`.
    pub(crate) fn accept(&mut self, listener: RawFd, user_data: u64) {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(&entry);
    }

    /// A multishot receive on `fd` from the provided buffers of `group`, ending by itself
    /// (a completion without `IORING_CQE_F_MORE`) once `limit` bytes arrived, if given; with
    /// `bundle`, each completion may span several buffers.
    pub(crate) fn recv(
        &mut self,
        file: FileRef,
        group: u16,
        limit: Option<u32>,
        bundle: bool,
        user_data: u64,
    ) {
        let entry = recv_multi(file, group, limit, bundle).user_data(user_data);
        self.push(&entry);
    }

    /// Whether this kernel has receive bundles (`IORING_FEAT_RECVSEND_BUNDLE`, Linux 6.10).
    pub(crate) fn has_bundles(&self) -> bool {
        self.ring.params().is_feature_recvsend_bundle()
    }

    /// Cancels the operation submitted with `target`.
    pub(crate) fn cancel(&mut self, target: u64, user_data: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        self.push(&entry);
    }

    /// Cancels every operation on `fd`.
    pub(crate) fn cancel_fd(&mut self, fd: RawFd, user_data: u64) {
        let builder = types::CancelBuilder::fd(types::Fd(fd)).all();
        let entry = opcode::AsyncCancel2::new(builder)
            .build()
            .user_data(user_data);
        self.push(&entry);
    }

    /// Reads the eventfd other threads write to wake this reactor.
    pub(crate) fn read_wake(&mut self, eventfd: RawFd, user_data: u64) {
        if self.wake_in_flight {
            return;
        }
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(types::Fd(eventfd), buf.cast::<u8>(), 8)
            .build()
            .user_data(user_data);
        self.push(&entry);
        self.wake_in_flight = true;
    }

    /// The eventfd read completed.
    pub(crate) fn wake_read(&mut self) {
        self.wake_in_flight = false;
    }

    /// Whether connection `key` has a send in flight.
    pub(crate) fn sending(&self, key: usize) -> bool {
        self.sends.get(key).is_some_and(Option::is_some)
    }

    /// Sends `bytes` (moved out, the vector left empty with its capacity: the caller's scratch
    /// never regrows) on `file` for connection `key`; they are held until [`Ring::sent`]. The
    /// connection must have no send in flight.
    pub(crate) fn send(
        &mut self,
        key: usize,
        file: FileRef,
        bytes: &mut Vec<Bytes>,
        user_data: u64,
    ) {
        assert!(!self.sending(key), "one send per connection at a time");
        let mut send = self.spare.pop().unwrap_or_else(|| {
            Box::new(Send {
                bytes: Vec::new(),
                iovecs: Vec::new(),
            })
        });
        // Moved, not swapped: each vector keeps its capacity where it is reused (a swap sent a
        // new box's empty vector back as the caller's scratch, regrown by every hand-over).
        send.bytes.append(bytes);
        send.iovecs.clear();
        send.iovecs.extend(send.bytes.iter().map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        let entry = if send.bytes.len() == 1 {
            let (ptr, len) = (send.bytes[0].as_ptr(), send.bytes[0].len() as u32);
            on_file!(file, |f| opcode::Send::new(f, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build())
        } else {
            let (ptr, len) = (send.iovecs.as_ptr(), send.iovecs.len() as u32);
            on_file!(file, |f| opcode::Writev::new(f, ptr, len).build())
        }
        .user_data(user_data);
        if self.sends.len() <= key {
            self.sends.resize_with(key + 1, || None);
        }
        // Stored before the push: the box's heap memory does not move with it.
        self.sends[key] = Some(send);
        self.in_flight_sends += 1;
        self.push(&entry);
    }

    /// The send of connection `key` completed: its bytes are handed back in `held` (which
    /// must be empty), in order, for the machine to keep what the kernel did not take; the
    /// send's vectors stay with it, for the next.
    /// Returns how many bytes were offered.
    pub(crate) fn sent(&mut self, key: usize, held: &mut Vec<Bytes>) -> usize {
        let Some(mut send) = self.sends.get_mut(key).and_then(Option::take) else {
            return 0;
        };
        self.in_flight_sends -= 1;
        let offered = send.iovecs.iter().map(|v| v.iov_len).sum();
        debug_assert!(held.is_empty());
        held.append(&mut send.bytes);
        send.iovecs.clear();
        if self.spare.len() < 64 {
            self.spare.push(send);
        }
        offered
    }

    /// Submits what is queued and waits for at least one completion, at most `timeout`
    /// (`None`: until one comes; zero: not at all, but completions ready are posted). One
    /// `io_uring_enter` per call.
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitted = match timeout {
            // A zero wait still asks for completions: with DEFER_TASKRUN, completions are
            // posted only when the ring's owner enters the kernel to get events.
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        if self.ring.submission().is_empty() {
            // Every entry was issued: no update reads `file_updates` any more.
            self.file_updates_used = 0;
        }
        match submitted {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether no completion is waiting: none in the queue, none held back on overflow.
    pub(crate) fn no_completions_waiting(&mut self) -> bool {
        !self.ring.submission().cq_overflow() && self.ring.completion().is_empty()
    }

    /// Moves every completion waiting in the queue into `out`.
    pub(crate) fn completions(&mut self, out: &mut Vec<cqueue::Entry>) {
        out.extend(self.ring.completion());
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight_sends == 0 && !self.wake_in_flight {
            return;
        }
        // Cancel everything and wait for the completions, so no buffer is freed while the
        // kernel may still read or write it.
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(u64::MAX);
        self.push(&entry);
        let give_up = Instant::now() + Duration::from_secs(2);
        let mut cqes = Vec::new();
        while (self.in_flight_sends > 0 || self.wake_in_flight) && Instant::now() < give_up {
            let _ = self.submit_and_wait(Some(Duration::from_millis(50)));
            cqes.clear();
            self.completions(&mut cqes);
            for cqe in &cqes {
                let (kind, key) = super::driver::decode_user_data(cqe.user_data());
                match kind {
                    super::driver::Op::Send if !cqueue::more(cqe.flags()) => {
                        self.sent(key, &mut Vec::new());
                    }
                    super::driver::Op::Wake => self.wake_in_flight = false,
                    _ => {}
                }
            }
        }
        if self.in_flight_sends > 0 || self.wake_in_flight {
            // Better a leak than memory the kernel may still write into.
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }
}

/// Where `struct io_uring_sqe` keeps the union of `splice_fd_in`, `file_index` and `optlen`
/// (linux/io_uring.h: 8 bytes of opcode, flags, ioprio and fd, then off, addr, len, the op
/// flags, user_data, buf_index and personality).
const SQE_OPTLEN_OFFSET: usize = 44;
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// A multishot receive on `fd` from the buffers of `group`. With `limit`, the kernel ends it
/// once that many bytes arrived (`sqe->optlen`, Linux 6.17: a multishot receive's total
/// limit; an older kernel fails it with EINVAL, as `optlen` shares the word it checks for a
/// fixed-file index). Without one, the kernel keeps receiving, up to 32 completions at a
/// time, for as long as buffers and bytes last: more than a connection may hold. With
/// `bundle` (`IORING_RECVSEND_BUNDLE`), a completion takes as many buffers as the bytes
/// waiting need (within the limit), and reports the first.
pub(crate) fn recv_multi(
    file: FileRef,
    group: u16,
    limit: Option<u32>,
    bundle: bool,
) -> squeue::Entry {
    let mut entry = match bundle {
        false => on_file!(file, |f| opcode::RecvMulti::new(f, group).build()),
        true => on_file!(file, |f| opcode::RecvMultiBundle::new(f, group).build()),
    };
    if let Some(limit) = limit {
        // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte SQE (asserted
        // above), so the pointer stays inside `entry`; offset 44 is the 4-byte-aligned `u32`
        // word of `optlen`, which the crate's receive builder leaves zero. A plain integer
        // store: no pointer is handed to the kernel.
        unsafe {
            let sqe = (&mut entry as *mut squeue::Entry).cast::<u8>();
            sqe.add(SQE_OPTLEN_OFFSET)
                .cast::<u32>()
                .write_unaligned(limit);
        }
    }
    entry
}

/// The socket a successful accept completion created (`result`, not negative).
pub(crate) fn accepted_socket(result: i32) -> OwnedFd {
    assert!(result >= 0, "an accept error is not a socket");
    // SAFETY: a successful accept's result is a new descriptor that nothing else owns; it is
    // owned from here on and closed when dropped.
    unsafe { OwnedFd::from_raw_fd(result) }
}

/// A new non-blocking eventfd: how other threads wake a reactor that waits in its ring.
pub(crate) fn eventfd() -> io::Result<std::fs::File> {
    // SAFETY: eventfd takes no pointers; its result is checked before it is used.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use io_uring::{cqueue, IoUring};

    use super::super::buf_ring::BufRing;
    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Runs one multishot receive until the kernel ends it; returns the bytes it delivered
    /// and whether it ended on its own (rather than on an error).
    fn receive_until_ended(ring: &mut IoUring, bufs: &mut BufRing, entry: squeue::Entry) -> usize {
        // SAFETY: the receive selects its buffer from the group; it holds no pointer of ours.
        unsafe { ring.submission().push(&entry.user_data(1)).unwrap() };
        let mut got = 0;
        loop {
            ring.submitter()
                .submit_with_args(
                    1,
                    &types::SubmitArgs::new().timespec(&types::Timespec::new().sec(2)),
                )
                .unwrap();
            let cqes: Vec<cqueue::Entry> = ring.completion().collect();
            assert!(!cqes.is_empty(), "the receive neither delivered nor ended");
            for cqe in cqes {
                assert!(cqe.result() > 0, "receive failed: {}", cqe.result());
                let bid = cqueue::buffer_select(cqe.flags()).unwrap();
                drop(bufs.filled(bid, cqe.result() as usize));
                got += cqe.result() as usize;
                if !cqueue::more(cqe.flags()) {
                    return got;
                }
            }
        }
    }

    /// 8,000 bytes sent, one receive limited to 3,000 armed on buffer group `group` (a bundle
    /// with `bundle`) and run until it ends: the bytes it took and those left in the socket.
    fn limited_receive(group: u16, bundle: bool) -> (usize, usize) {
        let mut ring = deferred_ring(64);
        if bundle {
            assert!(ring.params().is_feature_recvsend_bundle(), "Linux 6.10+");
        }
        let mut bufs = BufRing::register(&ring.submitter(), group, 16, 1024, false).unwrap();
        let (mut client, server) = pair();
        client.write_all(&[7; 8000]).unwrap();
        let fd = server.as_raw_fd();
        let limited = receive_until_ended(
            &mut ring,
            &mut bufs,
            recv_multi(FileRef::Fd(fd), group, Some(3000), bundle),
        );
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `unread`, which lives across the call.
        assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) }, 0);
        bufs.unregister(&ring.submitter()).unwrap();
        (limited, unread as usize)
    }

    #[test]
    fn a_limited_receive_ends_by_itself_and_leaves_the_rest_in_the_socket() {
        let (limited, unread) = limited_receive(5, false);
        // The limit is checked per completion: at most one buffer past it.
        assert!(
            (3000..3000 + 1024).contains(&limited),
            "a receive limited to 3000 bytes took {limited}"
        );
        // What it left is still in the socket, for the next receive.
        assert_eq!(unread, 8000 - limited);
    }

    #[test]
    fn a_limited_bundle_ends_by_itself_within_the_limit() {
        let (limited, unread) = limited_receive(6, true);
        // A bundle sizes its buffers to the limit left: it stops at the limit exactly.
        assert_eq!(limited, 3000);
        assert_eq!(unread, 5000);
    }

    /// A ring set up as the reactors set theirs up.
    fn deferred_ring(entries: u32) -> IoUring {
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .unwrap()
    }

    fn ring_with_files(slots: u32) -> Ring {
        let mut ring = Ring::new(deferred_ring(16));
        ring.register_files(slots).unwrap();
        ring
    }

    /// Sends `message` on `file` as connection `key` and waits for the send's completion.
    fn send_and_wait(ring: &mut Ring, key: usize, file: FileRef, message: &[u8]) -> i32 {
        let mut bytes = vec![Bytes::copy_from_slice(message)];
        ring.send(key, file, &mut bytes, 3 << 56);
        let mut cqes = Vec::new();
        while cqes.is_empty() {
            ring.submit_and_wait(Some(Duration::from_secs(2))).unwrap();
            ring.completions(&mut cqes);
        }
        assert_eq!(
            cqes.len(),
            1,
            "only the send completes (updates skip success)"
        );
        ring.sent(key, &mut Vec::new());
        cqes[0].result()
    }

    /// The driver's scratch vector and the send's own keep their capacity: nothing regrows
    /// per send (a swap once handed the driver a new send's empty vector back).
    #[test]
    fn a_send_moves_the_bytes_and_every_vector_keeps_its_capacity() {
        let mut ring = ring_with_files(4);
        let (mut client, server) = pair();
        let mut bytes = Vec::with_capacity(64);
        bytes.extend([Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        ring.send(1, FileRef::Fd(server.as_raw_fd()), &mut bytes, 3 << 56);
        assert!(bytes.is_empty());
        assert_eq!(
            bytes.capacity(),
            64,
            "the caller's scratch keeps its capacity"
        );
        let mut cqes = Vec::new();
        while cqes.is_empty() {
            ring.submit_and_wait(Some(Duration::from_secs(2))).unwrap();
            ring.completions(&mut cqes);
        }
        assert_eq!(cqes[0].result(), 4);
        let mut held = Vec::with_capacity(64);
        assert_eq!(ring.sent(1, &mut held), 4);
        assert_eq!(held.concat(), b"abcd");
        assert_eq!(held.capacity(), 64);
        let mut got = [0u8; 4];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"abcd");
    }

    #[test]
    fn a_registered_socket_is_used_by_its_slot_and_closes_once_the_slot_is_emptied() {
        let mut ring = ring_with_files(8);
        let (mut client, server) = pair();
        assert!(ring.install_file(3, server.as_raw_fd(), 7 << 56));
        assert!(
            !ring.install_file(8, server.as_raw_fd(), 7 << 56),
            "past the table"
        );
        assert_eq!(send_and_wait(&mut ring, 3, FileRef::Fixed(3), b"hello"), 5);
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"hello");

        // Our descriptor closed, the socket lives on in the table: no end of stream yet.
        drop(server);
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let early = std::io::Read::read(&mut client, &mut got);
        assert!(
            early.is_err(),
            "the socket closed with its slot still holding it"
        );
        // The slot emptied: the peer reads the end of stream.
        ring.remove_file(3, 7 << 56);
        ring.submit_and_wait(Some(Duration::ZERO)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut client, &mut got).unwrap(), 0);
    }

    #[test]
    fn more_updates_than_fit_before_a_submit_all_take_effect_in_order() {
        let mut ring = ring_with_files(4);
        let (mut client, server) = pair();
        let (_other_client, other) = pair();
        // 3 * 64 updates queued with no wait between them: the descriptors they read are
        // reused only after the queue was submitted, so the last one queued is the one held.
        for _ in 0..FILE_UPDATES * 3 {
            ring.install_file(1, other.as_raw_fd(), 7 << 56);
            ring.remove_file(1, 7 << 56);
        }
        ring.install_file(1, server.as_raw_fd(), 7 << 56);
        assert_eq!(send_and_wait(&mut ring, 1, FileRef::Fixed(1), b"ok"), 2);
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"ok");
    }

    #[test]
    fn an_empty_slot_fails_the_operation_not_the_ring() {
        let mut ring = ring_with_files(4);
        let result = send_and_wait(&mut ring, 2, FileRef::Fixed(2), b"lost");
        assert_eq!(result, -libc::EBADF);
    }
}
