//! The PostgreSQL engine (`--store postgres://...`): messages, inboxes with their per-inbox
//! sequences, sync positions and groups in a PostgreSQL database, with the SQLite engine's
//! promises: a completion only after its commit, `(from, client_msg_id)` stored at most once,
//! retention by dropping whole time partitions, reads that never block writes (MVCC).
//!
//! One writer thread per server owns one connection, driven by a single-threaded tokio
//! runtime of its own (`tokio-postgres`, chosen over the synchronous `postgres` crate for its
//! pipelining: docs/performance.md). If PostgreSQL goes away, the handle answers BUSY until the
//! writer has reconnected by itself.

mod error;
mod execute;
/// The append transaction's statements, for `bench/src/bin/pg_client.rs`: the client crates
/// are compared on exactly what the writer sends.
pub mod append_statements {
    pub use super::execute::{BUMP, FIND_IDS, FIND_KEYS, INSERT_INBOX, INSERT_MESSAGES};
}
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use crate::store::Queued;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use super::{
    Completion, CompletionWake, GroupRecord, Store, StoreError, StoreMetrics, StoreRequest,
    StoreThread, SubmitError,
};

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Where the database is: a `postgres://user:password@host:port/db` URL or libpq's
    /// `key=value` form.
    pub url: String,
    /// Capacity of the bounded request queue.
    pub queue: usize,
    /// Requests committed in one transaction, at most.
    pub max_batch: usize,
    /// How long a small batch waits for more before its transaction (see `store::gather_batch`).
    pub commit_delay: Duration,
    /// Messages older than this are never synced, and their day's partitions are dropped.
    pub retention: Duration,
    /// A connection attempt or a batch that takes longer fails as [`StoreError::Unavailable`]
    /// and the writer reconnects.
    pub timeout: Duration,
    /// Where the writer thread counts its commits (it is their one writer).
    pub metrics: Arc<StoreMetrics>,
    /// Called after each batch's completions are sent (see [`CompletionWake`]).
    pub completion_wake: CompletionWake,
}

impl PostgresConfig {
    /// The defaults, with the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            queue: 65_536,
            max_batch: 1024,
            commit_delay: super::DEFAULT_COMMIT_DELAY,
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            timeout: Duration::from_secs(10),
            metrics: Arc::default(),
            completion_wake: CompletionWake::default(),
        }
    }

    fn connection(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| StoreError::BadLocation {
                detail: e.to_string().into(),
            })?;
        config.application_name("switchboard");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.timeout);
        }
        Ok(config)
    }
}

/// `url` with any password left out, for logs.
pub fn redacted(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(host, port)| match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    tokio_postgres::config::Host::Unix(path) => {
                        format!("{}:{port}", path.display())
                    }
                })
                .collect();
            format!(
                "postgres://{}@{}/{}",
                config.get_user().unwrap_or(""),
                hosts.join(","),
                config.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgres (an unreadable location)".to_owned(),
    }
}

/// A cloneable handle to the PostgreSQL writer thread. Dropping every handle closes the
/// queue: the thread serves what is queued, commits, and exits.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    requests: Sender<Queued>,
    up: Arc<AtomicBool>,
    connection: Arc<tokio_postgres::Config>,
    timeout: Duration,
}

impl PostgresStore {
    /// Connects, brings the schema up to date, and starts the writer thread, which sends every
    /// completion to `completions`. Fails (without a thread) if PostgreSQL cannot be reached.
    pub fn open(
        config: PostgresConfig,
        completions: Sender<Completion>,
    ) -> Result<(PostgresStore, StoreThread), StoreError> {
        let connection = config.connection()?;
        let runtime = runtime()?;
        let connected = runtime.block_on(async {
            tokio::time::timeout(config.timeout, writer::connect(&connection, true))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable {
                        detail: format!("no answer within {:?}", config.timeout).into(),
                    })
                })
        })?;
        let (requests, receiver) = crossbeam_channel::bounded(config.queue.max(1));
        let up = Arc::new(AtomicBool::new(true));
        let writer = writer::PgWriter::new(
            runtime,
            connection.clone(),
            connected,
            receiver,
            completions,
            &config,
            up.clone(),
        );
        let thread = StoreThread::spawn(move || writer.run())?;
        let store = PostgresStore {
            requests,
            up,
            connection: Arc::new(connection),
            timeout: config.timeout,
        };
        Ok((store, thread))
    }

    /// Every group with its members (committed state), read on a connection of its own: for
    /// the logic core's membership cache at start-up.
    pub fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        runtime()?.block_on(async {
            let read = async {
                let (client, connection) = self
                    .connection
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| error::from_postgres(&e, true))?;
                tokio::spawn(connection);
                schema::read_groups(&client).await
            };
            tokio::time::timeout(self.timeout, read)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable {
                        detail: "no answer while reading groups".into(),
                    })
                })
        })
    }

    /// Queues `request` without blocking. While PostgreSQL is away it is refused at once as
    /// [`SubmitError::Busy`], and so is a request that finds the queue full.
    pub fn submit(&self, request: StoreRequest) -> Result<(), SubmitError> {
        if !self.up.load(Ordering::Acquire) {
            return Err(SubmitError::Busy(request));
        }
        self.requests
            .try_send(Queued::now(request))
            .map_err(|e| match e {
                TrySendError::Full(queued) => SubmitError::Busy(queued.request),
                TrySendError::Disconnected(queued) => SubmitError::Stopped(queued.request),
            })
    }

    /// Whether the writer is connected (false while it reconnects).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Requests waiting for the writer thread.
    pub fn queue_len(&self) -> usize {
        self.requests.len()
    }
}

impl Store for PostgresStore {
    fn submit(&mut self, request: StoreRequest) -> Result<(), SubmitError> {
        PostgresStore::submit(self, request)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::ThreadSpawn {
            detail: format!("cannot build the postgres runtime: {e}").into(),
        })
}
