//! SQLite's own page cache (pcache1) behind a thin layer that skips a whole-cache scan at the
//! end of every transaction that split a B-tree page.
//!
//! At each transaction's end SQLite drops cached pages past the database's end
//! (`xTruncate(dbSize + 1)`). pcache1 decides what to scan from the largest key it has ever
//! held since its last truncate: when `balance_nonroot` swaps two new pages' numbers it parks
//! one under the lock-byte page's number (262,145 with 4 KiB pages) for a moment, so after any
//! such split pcache1 walks every bucket of its hash table, dropping nothing: 22 % of the store
//! thread's time at 3,000 messages/s once the 64 MiB cache is full (docs/performance.md, "The
//! store thread's syncs"). This layer keeps, per cache, the keys above the last truncate's
//! limit that may be present ([`KeysAbove`]) and calls pcache1's truncate only when one of them
//! is at or past the new limit, or when it has lost count; everything else passes straight
//! through.
//!
//! Invariant: every page key present in a cache and above `watermark` is in `keys`, unless
//! `exact` is false. Keys of pages pcache1 recycles or discards may linger in `keys` (a
//! superset only costs a real truncate). Installed once per process, before SQLite's first
//! use (`install`); if SQLite was already initialised, pcache1 runs alone. Every place that
//! opens SQLite in this crate (`schema::open_connection`, the tests' `raw_connection`) calls
//! `install` first, and `Once` holds the others until it is done, so no thread initialises
//! SQLite while the configuration is being written.

use std::os::raw::{c_int, c_uint};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use rusqlite::ffi;

/// Keys tracked above the watermark before the layer stops counting until the next truncate:
/// a transaction adds a few new pages; a long read before any write may touch many.
const MAX_TRACKED: usize = 64;

/// Which keys above the last truncate's limit a cache may hold: the sans-FFI part.
#[derive(Debug, Default)]
pub(crate) struct KeysAbove {
    /// Every present key above this one is in `keys` (while `exact`).
    watermark: c_uint,
    keys: Vec<c_uint>,
    exact: bool,
}

impl KeysAbove {
    pub(crate) fn new() -> Self {
        KeysAbove {
            watermark: 0,
            keys: Vec::new(),
            exact: true,
        }
    }

    /// A page may have been created under `key`.
    pub(crate) fn added(&mut self, key: c_uint) {
        if key <= self.watermark || !self.exact || self.keys.contains(&key) {
            return;
        }
        if self.keys.len() >= MAX_TRACKED {
            self.exact = false;
            self.keys.clear();
        } else {
            self.keys.push(key);
        }
    }

    /// A page moved from `old` to `new` (nothing is left under `old`).
    pub(crate) fn moved(&mut self, old: c_uint, new: c_uint) {
        self.keys.retain(|&key| key != old);
        self.added(new);
    }

    /// Every page at `limit` or past it is to be dropped: whether the cache may hold one (the
    /// real truncate must run). Afterwards, none does, whichever the answer.
    pub(crate) fn truncate(&mut self, limit: c_uint) -> bool {
        let must_scan =
            !self.exact || limit <= self.watermark || self.keys.iter().any(|&key| key >= limit);
        self.watermark = limit.saturating_sub(1);
        self.keys.clear();
        self.exact = true;
        must_scan
    }
}

/// One cache: pcache1's, and what this layer knows of its keys. SQLite holds a pointer to it
/// as its `sqlite3_pcache`.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    keys: KeysAbove,
}

/// pcache1's methods, as `SQLITE_CONFIG_GETPCACHE2` gave them.
struct Inner(ffi::sqlite3_pcache_methods2);

// SAFETY: the struct holds pcache1's function pointers and its `pArg` (null for pcache1); they
// are read only, after `install` wrote them once, and pcache1 is safe to call from any thread
// (SQLite is built with SQLITE_THREADSAFE=1).
unsafe impl Send for Inner {}
// SAFETY: shared references only read the function pointers and the null `pArg`, which
// `install` wrote once before any method could be reached; pcache1 takes its own locks.
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();
static INSTALL: Once = Once::new();

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only reachable through methods registered after INNER was set.
    &INNER.get().expect("page cache layer used before install").0
}

/// Puts the layer in front of pcache1 for every SQLite connection this process opens from now
/// on; must run before SQLite's first use. Returns whether it is in place.
pub(crate) fn install() -> bool {
    INSTALL.call_once(|| {
        let mut methods = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
        // SAFETY: GETPCACHE2 writes the current (default: pcache1) methods into the struct
        // passed by pointer; the struct is as large as SQLite's (same bindings).
        let rc =
            unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, methods.as_mut_ptr()) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite already initialised: its page cache runs alone");
            return;
        }
        // SAFETY: GETPCACHE2 returned SQLITE_OK, so SQLite wrote every field (the struct was
        // zeroed before, so even a field it skipped is a valid None or null).
        let methods = unsafe { methods.assume_init() };
        if methods.xFetch.is_none() || INNER.set(Inner(methods)).is_err() {
            return;
        }
        let layer = ffi::sqlite3_pcache_methods2 {
            iVersion: 1,
            pArg: methods.pArg,
            xInit: methods.xInit,
            xShutdown: methods.xShutdown,
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SAFETY: PCACHE2 copies the struct passed by pointer; SQLite is not initialised yet
        // (GETPCACHE2 above succeeded, and `Once` keeps other threads out until this returns).
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &layer) };
        if rc == ffi::SQLITE_OK {
            INSTALLED.store(true, Ordering::Release);
        } else {
            tracing::debug!(rc, "SQLite refused the page cache layer");
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Truncates this layer answered without pcache1's scan, over the process (tests).
static SCANS_SKIPPED: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
pub(crate) fn scans_skipped() -> u64 {
    SCANS_SKIPPED.load(Ordering::Relaxed)
}

/// The cache behind SQLite's handle.
///
/// # Safety
/// `cache` must be a handle `create` returned and `destroy` has not freed; SQLite uses one
/// cache from one thread at a time.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: the caller guarantees `cache` is a live `Box<Cache>` from `create` (so aligned and
    // initialised) and that no other reference to it exists while this one is used.
    unsafe { &mut *cache.cast::<Cache>() }
}

// The callbacks below are SQLite's pcache2 methods. Each is an `unsafe extern "C" fn` because it
// takes raw handles whose validity only SQLite can promise; its `# Safety` says what.

/// pcache2's xCreate.
///
/// # Safety
/// Called by SQLite only, after `install` (so `inner()` holds pcache1's methods).
unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    // SAFETY: pcache1's xCreate takes plain integers; these are SQLite's own arguments for it.
    let inner = unsafe { inner().xCreate.expect("pcache1 xCreate")(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let boxed = Box::new(Cache {
        inner,
        keys: KeysAbove::new(),
    });
    Box::into_raw(boxed).cast::<ffi::sqlite3_pcache>()
}

/// pcache2's xCachesize.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile (pcache2's contract).
unsafe extern "C" fn cachesize(handle: *mut ffi::sqlite3_pcache, pages: c_int) {
    // SAFETY: `handle` is live and ours (the contract above), so `cache` may borrow it, and its
    // `inner` is the pcache1 cache created with it, which pcache1's method expects.
    unsafe { inner().xCachesize.expect("pcache1 xCachesize")(cache(handle).inner, pages) }
}

/// pcache2's xPagecount.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile (pcache2's contract).
unsafe extern "C" fn pagecount(handle: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: `handle` is live and ours, so `cache` may borrow it; its `inner` is pcache1's
    // cache, the only argument pcache1's method takes.
    unsafe { inner().xPagecount.expect("pcache1 xPagecount")(cache(handle).inner) }
}

/// pcache2's xFetch.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile (pcache2's contract).
unsafe extern "C" fn fetch(
    handle: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: `handle` is live and ours (the contract above): `cache` may borrow it.
    let this = unsafe { cache(handle) };
    // SAFETY: `this.inner` is the pcache1 cache made for this handle; key and flag are SQLite's.
    let page = unsafe { inner().xFetch.expect("pcache1 xFetch")(this.inner, key, create_flag) };
    if create_flag != 0 && !page.is_null() {
        this.keys.added(key);
    }
    page
}

/// pcache2's xUnpin.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile, and `page` a page
/// its `fetch` returned (pcache2's contract).
unsafe extern "C" fn unpin(
    handle: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    // SAFETY: `handle` is live and ours; `page` came from pcache1's xFetch on the same `inner`
    // cache (our `fetch` returns its pages unchanged), which is what pcache1's xUnpin expects.
    unsafe { inner().xUnpin.expect("pcache1 xUnpin")(cache(handle).inner, page, discard) }
}

/// pcache2's xRekey.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile, and `page` a page
/// its `fetch` returned (pcache2's contract).
unsafe extern "C" fn rekey(
    handle: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    // SAFETY: `handle` is live and ours (the contract above): `cache` may borrow it.
    let this = unsafe { cache(handle) };
    // SAFETY: `page` is one of pcache1's pages of `this.inner` (our `fetch` passes them through).
    unsafe { inner().xRekey.expect("pcache1 xRekey")(this.inner, page, old, new) };
    this.keys.moved(old, new);
}

/// pcache2's xTruncate.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile (pcache2's contract).
unsafe extern "C" fn truncate(handle: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: `handle` is live and ours (the contract above): `cache` may borrow it.
    let this = unsafe { cache(handle) };
    if this.keys.truncate(limit) {
        // SAFETY: `this.inner` is the pcache1 cache made for this handle; `limit` is SQLite's.
        unsafe { inner().xTruncate.expect("pcache1 xTruncate")(this.inner, limit) };
    } else {
        SCANS_SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// pcache2's xDestroy.
///
/// # Safety
/// `handle` is a live cache from `create` that SQLite will not use again (pcache2's contract).
unsafe extern "C" fn destroy(handle: *mut ffi::sqlite3_pcache) {
    // SAFETY: `handle` came from `create`'s Box::into_raw and SQLite destroys it once.
    let this = unsafe { Box::from_raw(handle.cast::<Cache>()) };
    // SAFETY: pcache1's method on its own cache, which is not used again.
    unsafe { inner().xDestroy.expect("pcache1 xDestroy")(this.inner) };
}

/// pcache2's xShrink.
///
/// # Safety
/// `handle` is a live cache from `create`, used by no other thread meanwhile (pcache2's contract).
unsafe extern "C" fn shrink(handle: *mut ffi::sqlite3_pcache) {
    // SAFETY: `handle` is live and ours, so `cache` may borrow it; its `inner` is pcache1's
    // cache, the only argument pcache1's method takes.
    unsafe { inner().xShrink.expect("pcache1 xShrink")(cache(handle).inner) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    const CHILD_DIR: &str = "SWITCHBOARD_PAGE_CACHE_CHILD_DIR";
    const CHILD_DONE: &str = "page cache child: done";

    /// 50 rows in random key order per transaction: page splits in the middle of the tree,
    /// with new pages swapped into order.
    fn insert_batches(conn: &rusqlite::Connection, state: &mut u64, batches: usize) {
        for _ in 0..batches {
            let tx = conn.unchecked_transaction().unwrap();
            for _ in 0..50 {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, zeroblob(100))",
                    [format!("{:016x}", *state)],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
    }

    fn rows(conn: &rusqlite::Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// Run in a fresh process by `page_splits_skip_the_scan_and_lose_nothing`: the layer can
    /// only go in before SQLite's first use.
    #[test]
    #[ignore = "run as a child process by page_splits_skip_the_scan_and_lose_nothing"]
    fn page_cache_child() {
        let Ok(dir) = std::env::var(CHILD_DIR) else {
            return;
        };
        assert!(
            install(),
            "the layer did not go in before SQLite's first use"
        );
        let path = Path::new(&dir).join("t.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;",
        )
        .unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15;
        insert_batches(&conn, &mut state, 200);
        assert!(
            scans_skipped() >= 150,
            "{} of 200 commits skipped the scan",
            scans_skipped()
        );
        // A transaction that grows the database and rolls back: its pages past the old end
        // must leave the cache (the scan runs), and nothing of it stays.
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..3_000 {
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, zeroblob(100))",
                [format!("rolled back {i:05}")],
            )
            .unwrap();
        }
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(rows(&conn), 10_000);
        insert_batches(&conn, &mut state, 20);
        assert_eq!(rows(&conn), 11_000);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        // A second connection reads what the first committed.
        let reader = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(rows(&reader), 11_000);
        println!("{CHILD_DONE}");
    }

    #[test]
    fn page_splits_skip_the_scan_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "store::sqlite::page_cache::tests::page_cache_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_DIR, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(CHILD_DONE),
            "child: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn a_swap_through_the_lock_page_needs_no_scan() {
        let mut keys = KeysAbove::new();
        // 100 pages read into a new cache, then the end of a transaction.
        for key in 1..=100 {
            keys.added(key);
        }
        assert!(
            keys.truncate(101),
            "more pages than it follows: scanned once"
        );
        // A transaction grows the database to 102 pages and splits, swapping 101 and 57
        // through the lock page's number.
        keys.added(101);
        keys.added(102);
        keys.moved(101, 262_145);
        keys.moved(57, 101);
        keys.moved(262_145, 57);
        assert!(!keys.truncate(103), "nothing lies past page 102");
    }

    #[test]
    fn a_page_past_the_end_is_scanned_for() {
        let mut keys = KeysAbove::new();
        keys.truncate(11);
        keys.added(12);
        keys.added(15);
        // A rollback: the database is back to 10 pages, pages 12 and 15 must go.
        assert!(keys.truncate(11));
        keys.added(11);
        keys.moved(11, 262_145);
        assert!(
            keys.truncate(12),
            "a page left under the lock page's number"
        );
        // A database that shrank below the watermark is scanned whatever was tracked.
        assert!(keys.truncate(5));
    }

    #[test]
    fn too_many_pages_to_follow_means_a_scan_then_counting_again() {
        let mut keys = KeysAbove::new();
        keys.truncate(1);
        for key in 2..2 + MAX_TRACKED as c_uint + 1 {
            keys.added(key);
        }
        assert!(keys.truncate(1_000));
        keys.added(1_000);
        assert!(!keys.truncate(1_001));
    }
}
