//! Writing a file's dirty pages out a slice at a time, so that another file's sync never waits
//! behind all of them at once.
//!
//! A checkpoint copies thousands of pages scattered over the database file into the kernel's
//! page cache; whoever then fsyncs the file writes them all in one go, and a commit's WAL sync
//! issued meanwhile queues behind them on the device. `sync_file_range` with
//! `WAIT_BEFORE | WRITE | WAIT_AFTER` over one slice starts the writes of that slice's dirty
//! pages and waits for them, so at most one slice is in flight: the device serves the WAL's
//! writes between two slices. It syncs no metadata and flushes no device cache: it makes the
//! later fsync cheap, not the data durable (SQLite's own fsync still does that).
//!
//! Linux only, like the rest of the gateway; the one `unsafe` block is the system call, which
//! takes no pointer.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Bytes of the file per `sync_file_range`: 1 MiB holds a few dirty pages of a grown database
/// after a checkpoint (thousands scattered over hundreds of thousands), and a young one's
/// slice, mostly dirty, is one sequential write of 1 MiB.
pub(crate) const WRITEBACK_SLICE: u64 = 1 << 20;

/// A read-only handle on the file whose pages it writes out (the page cache is the inode's:
/// any descriptor of the file reaches it).
#[derive(Debug)]
pub(crate) struct Writeback {
    file: File,
}

impl Writeback {
    pub(crate) fn open(path: &Path) -> io::Result<Writeback> {
        Ok(Writeback {
            file: File::open(path)?,
        })
    }

    /// Writes every dirty page of the file out, one slice after the other; returns the slices.
    pub(crate) fn write_out(&self) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        let bytes = i64::try_from(WRITEBACK_SLICE).map_err(io::Error::other)?;
        let mut offset = 0;
        let mut slices = 0;
        while offset < len {
            let start = i64::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: a system call on a descriptor this struct owns, with integer arguments
            // only; the kernel reads no memory of ours.
            let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), start, bytes, flags) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            offset += WRITEBACK_SLICE;
            slices += 1;
        }
        Ok(slices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `struct cachestat_range` and `struct cachestat` of cachestat(2) (Linux 6.5).
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }

    /// The file's pages in the page cache that are dirty or under writeback.
    fn unwritten_pages(file: &File) -> u64 {
        // The same number on every architecture (system calls from 424 on are shared);
        // the libc crate names it only for some.
        const SYS_CACHESTAT: libc::c_long = 451;
        let range = CachestatRange { off: 0, len: 0 };
        let mut stat = Cachestat::default();
        // SAFETY: both pointers are to live `repr(C)` structs laid out as cachestat(2)
        // defines them; the kernel reads `range` and writes `stat` during the call only.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const CachestatRange,
                &mut stat as *mut Cachestat,
                0,
            )
        };
        assert_eq!(rc, 0, "cachestat: {}", io::Error::last_os_error());
        assert!(stat.nr_cache >= stat.nr_dirty);
        stat.nr_dirty + stat.nr_writeback
    }

    /// Pages written through another descriptor are on the device when `write_out` returns
    /// (the kernel's own writeback waits 30 s by default), slice by slice.
    #[test]
    fn every_slice_of_a_written_file_is_written_out() {
        // Beside the test binary, not in /tmp: a tmpfs has no writeback to observe.
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
        let path = dir.path().join("db");
        let mut writer = File::create(&path).unwrap();
        let data: Vec<u8> = (0..WRITEBACK_SLICE * 7 / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        writer.write_all(&data).unwrap();
        let writeback = Writeback::open(&path).unwrap();
        let before = unwritten_pages(&writeback.file);
        assert!(before > 0, "nothing dirty after writing 3.5 MiB");
        assert_eq!(writeback.write_out().unwrap(), 4);
        assert_eq!(unwritten_pages(&writeback.file), 0, "{before} pages before");
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert_eq!(Writeback::open(&empty).unwrap().write_out().unwrap(), 0);
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Writeback::open(&dir.path().join("absent")).is_err());
    }
}
