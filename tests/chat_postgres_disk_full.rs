//! PostgreSQL out of disk, for real: the database lives in a tablespace on a small tmpfs (its
//! WAL stays in the server's own directory, as an operator's usually does), the test fills that
//! filesystem, and `switchboard` must answer the senders with a clear status (INTERNAL, the
//! documented "the server failed, resend with the same client_msg_id"), keep serving everyone
//! else (logins, sync, pings), lose nothing it acknowledged, and store the resent message once
//! as soon as space comes back, with no restart.
//!
//! Mounting a tmpfs needs root (CI runs as root); as anyone else the test says so and skips.
//! Its own test binary: a full tablespace must not disturb tests sharing the server.

mod chat_common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chat_common::{pg_server, unique_user, TestServer, Transport};
use switchboard_protocol::Status;

/// A tmpfs of `size` mounted on a fresh directory, owned by `postgres`, unmounted on drop
/// (lazily: a PostgreSQL backend may still hold a file in it).
struct SmallDisk {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().expect("a temp dir");
        let dir = parent.path().join("tablespace");
        std::fs::create_dir(&dir).expect("a mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            &dir,
        );
        run("chown", &["postgres:postgres"], &dir);
        // PostgreSQL checks that every directory above a tablespace lets it through.
        run("chmod", &["755"], parent.path());
        SmallDisk {
            dir,
            _parent: parent,
        }
    }

    /// Writes a filler file until the filesystem refuses (ENOSPC): the disk is then full.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file");
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            match file.write_all(&chunk).and_then(|_| file.sync_data()) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return path,
                Err(e) => panic!("filling the tablespace: {e}"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn run(program: &str, args: &[&str], path: &Path) {
    let status = Command::new(program)
        .args(args)
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} {}", path.display());
}

#[test]
fn postgres_out_of_disk_answers_internal_serves_the_rest_and_recovers_losing_nothing() {
    if !pg_server::is_root() {
        eprintln!("skipped: mounting the small tmpfs for the tablespace needs root (CI is root)");
        return;
    }
    let disk = SmallDisk::mount("48m");
    let pg = pg_server::server();
    pg.psql(
        "postgres",
        &format!("CREATE TABLESPACE small LOCATION '{}'", disk.dir.display()),
    );
    pg.psql("postgres", "CREATE DATABASE full_disk TABLESPACE small");
    chat_common::use_postgres(pg.url("full_disk"));

    let server = TestServer::start();
    let (alice, bob, carol) = (
        unique_user("alice"),
        unique_user("bob"),
        unique_user("carol"),
    );
    let mut sender = server.login(Transport::Tcp, &alice, None);
    let mut acked: HashSet<u64> = HashSet::new();
    for id in 0..20 {
        let ok = sender
            .send_direct(&bob, id, format!("before {id}").as_bytes())
            .expect("a send while there is room");
        acked.insert(ok.msg_id);
    }

    let filler = disk.fill();
    // Sends go on until a table or index must grow and cannot: that one is refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next_id = 20;
    let refused_id = loop {
        assert!(
            Instant::now() < deadline,
            "no send was refused on a full disk"
        );
        match sender.send_direct(&bob, next_id, format!("message {next_id}").as_bytes()) {
            Ok(ok) => {
                acked.insert(ok.msg_id);
                next_id += 1;
            }
            Err(status) => {
                assert_eq!(
                    status,
                    Status::INTERNAL,
                    "a full disk is answered INTERNAL (docs/protocol.md)"
                );
                break next_id;
            }
        }
    };
    eprintln!(
        "the disk filled after {} sends; send {refused_id} was refused INTERNAL",
        refused_id - 20
    );
    // Still full: the resend is refused the same way, and the connection stays.
    assert_eq!(
        sender.send_direct(&bob, refused_id, format!("message {refused_id}").as_bytes()),
        Err(Status::INTERNAL)
    );
    assert!(
        sender.is_open(),
        "the sender was cut for the store's failure"
    );

    // Everyone else is served: a new login, a ping, and a sync that reads everything acked.
    let mut other = server.login(Transport::Ws, &carol, None);
    other.ping();
    let mut reader = server.login(Transport::Ws, &bob, None);
    let seen: HashSet<u64> = reader.sync_peek().iter().map(|m| m.msg_id).collect();
    assert!(
        acked.is_subset(&seen),
        "an acknowledged message is not readable while the disk is full"
    );

    // Space comes back: the same client_msg_id is stored once and acknowledged, no restart.
    std::fs::remove_file(&filler).expect("the filler goes");
    let deadline = Instant::now() + Duration::from_secs(30);
    let resent = loop {
        match sender.send_direct(&bob, refused_id, format!("message {refused_id}").as_bytes()) {
            Ok(ok) => break ok.msg_id,
            Err(Status::INTERNAL | Status::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(other) => panic!("after the disk was freed: {other:?}"),
        }
    };
    acked.insert(resent);
    let again = sender
        .send_direct(&bob, refused_id, format!("message {refused_id}").as_bytes())
        .expect("the resend of an acknowledged message");
    assert_eq!(
        again.msg_id, resent,
        "a resend is answered with the first ack"
    );

    let synced = reader.sync_all();
    let ids: Vec<u64> = synced.iter().map(|m| m.msg_id).collect();
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a message synced twice");
    let lost: Vec<&u64> = acked.difference(&distinct).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert_eq!(
        distinct.len(),
        acked.len(),
        "stored but never acknowledged, or stored twice"
    );

    server.stop();
    pg.psql("postgres", "DROP DATABASE full_disk");
    pg.psql("postgres", "DROP TABLESPACE small");
}
