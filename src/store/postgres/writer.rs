//! The PostgreSQL writer thread: one connection, driven by a single-threaded tokio runtime of
//! its own, committing requests in groups the way the SQLite thread does.
//!
//! It blocks (on the crossbeam queue, outside the runtime) for a first request, drains what
//! else is queued (up to `max_batch`; when that is little, what else comes within the commit
//! delay: `store::gather_batch`), runs them all in one transaction, and only then sends
//! their completions: an `Appended` is the durability promise. The connection's life is a
//! small state machine, `Link`: up, or down with a time for the next attempt (backoff doubling
//! to a ceiling). While down, the shared `up` flag makes `submit` answer BUSY at once and
//! requests already queued fail with [`StoreError::Unavailable`]; one log line per change of
//! state. A batch that does not finish within `batch_timeout` drops the connection (its
//! outcome unknown, nothing of it acknowledged: a resend is deduplicated).

use crate::store::Queued;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

use super::error::from_postgres;
use super::execute::{self, AppendRef, Statements};
use super::schema;
use super::PostgresConfig;
use crate::store::{Completion, StoreError, StoreMetrics, StoreRequest};

/// How often the writer keeps partitions and retention in order (and once per connection).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// How often an idle writer looks whether PostgreSQL closed its connection, so the state
/// change is logged (and BUSY answered) without waiting for a request to fail.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The first wait before reconnecting, doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub(crate) struct Connected {
    client: Client,
    statements: Statements,
}

/// The connection, or when to try again.
enum Link {
    Up(Box<Connected>),
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
}

pub(crate) struct PgWriter {
    pub(crate) runtime: Runtime,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) requests: Receiver<Queued>,
    pub(crate) completions: Sender<Completion>,
    pub(crate) completion_wake: crate::store::CompletionWake,
    pub(crate) max_batch: usize,
    pub(crate) commit_delay: Duration,
    pub(crate) retention: Duration,
    pub(crate) batch_timeout: Duration,
    pub(crate) up: Arc<AtomicBool>,
    /// Commit times and batch sizes, the same block the SQLite writer fills.
    pub(crate) metrics: Arc<StoreMetrics>,
    /// Lower bounds of the partitions known to exist.
    pub(crate) partitions: BTreeSet<i64>,
    link: Link,
    batch: Vec<StoreRequest>,
    done: Vec<Completion>,
}

/// Connects, prepares the statements, and (first time only) migrates.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    migrate: bool,
) -> Result<Connected, StoreError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| from_postgres(&e, true))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; the next statement then
        // fails and the writer reconnects.
        let _ = connection.await;
    });
    if migrate {
        schema::migrate(&mut client).await?;
    }
    let statements = Statements::prepare(&client)
        .await
        .map_err(|e| from_postgres(&e, client.is_closed()))?;
    Ok(Connected { client, statements })
}

impl PgWriter {
    pub(crate) fn new(
        runtime: Runtime,
        config: tokio_postgres::Config,
        connected: Connected,
        requests: Receiver<Queued>,
        completions: Sender<Completion>,
        settings: &PostgresConfig,
        up: Arc<AtomicBool>,
    ) -> PgWriter {
        let max_batch = settings.max_batch;
        PgWriter {
            runtime,
            config,
            requests,
            completions,
            completion_wake: settings.completion_wake.clone(),
            max_batch: max_batch.max(1),
            commit_delay: settings.commit_delay,
            retention: settings.retention,
            batch_timeout: settings.timeout,
            up,
            metrics: settings.metrics.clone(),
            partitions: BTreeSet::new(),
            link: Link::Up(Box::new(connected)),
            batch: Vec::with_capacity(max_batch.clamp(1, 4096)),
            done: Vec::with_capacity(max_batch.clamp(1, 4096)),
        }
    }

    /// Serves requests until every handle is dropped and the queue is empty.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        let mut next_maintenance = Instant::now();
        loop {
            if let Link::Down { retry_at, .. } = self.link {
                if Instant::now() >= retry_at {
                    self.reconnect();
                }
            }
            let deadline = match self.link {
                Link::Up(_) => next_maintenance.min(Instant::now() + IDLE_CHECK_EVERY),
                Link::Down { retry_at, .. } => retry_at.min(next_maintenance),
            };
            if matches!(self.link, Link::Up(_)) && Instant::now() >= next_maintenance {
                self.maintain();
                next_maintenance = Instant::now() + MAINTENANCE_EVERY;
                continue;
            }
            match self.requests.recv_deadline(deadline) {
                Ok(first) => self.run_batch(first),
                Err(RecvTimeoutError::Timeout) => self.check_idle_connection(),
                // Disconnected only once empty: every request was served.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    fn reconnect(&mut self) {
        let attempt = self.runtime.block_on(async {
            tokio::time::timeout(self.batch_timeout, connect(&self.config, false)).await
        });
        match attempt {
            Ok(Ok(connected)) => {
                tracing::warn!("postgres: reconnected; taking requests again");
                self.link = Link::Up(Box::new(connected));
                self.up.store(true, Ordering::Release);
                // Partitions may have come or gone while away.
                self.partitions.clear();
                self.maintain();
            }
            Ok(Err(_)) | Err(_) => {
                if let Link::Down { retry_at, backoff } = &mut self.link {
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    *retry_at = Instant::now() + *backoff;
                }
            }
        }
    }

    /// Lets the connection's task read what the server sent while the writer slept (a
    /// termination notice, the end of the stream) and goes down if it has ended.
    fn check_idle_connection(&mut self) {
        let Link::Up(conn) = &self.link else {
            return;
        };
        self.runtime
            .block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        if conn.client.is_closed() {
            self.go_down(&StoreError::Unavailable {
                detail: "the server closed the connection".into(),
            });
        }
    }

    /// The connection failed: drop it, refuse new requests, try again after a backoff.
    fn go_down(&mut self, error: &StoreError) {
        if !matches!(self.link, Link::Up(_)) {
            return; // already down: the backoff goes on
        }
        tracing::warn!(%error, "postgres: connection lost; answering BUSY and reconnecting");
        self.up.store(false, Ordering::Release);
        self.link = Link::Down {
            retry_at: Instant::now() + BACKOFF_MIN,
            backoff: BACKOFF_MIN,
        };
    }

    fn run_batch(&mut self, first: Queued) {
        let mut batch = std::mem::take(&mut self.batch);
        crate::store::gather_batch(
            &mut batch,
            first,
            &self.requests,
            self.max_batch,
            self.commit_delay,
        );
        self.done.clear();
        self.metrics.queued_requests.set(self.requests.len() as u64);
        let result = match &self.link {
            Link::Down { .. } => Err(StoreError::Unavailable {
                detail: "not connected to postgres; reconnecting".into(),
            }),
            Link::Up(_) => {
                let started = Instant::now();
                let result = self.execute_batch(&batch);
                self.metrics
                    .commit_seconds
                    .observe_duration(started.elapsed());
                self.metrics.batch_requests.observe(batch.len() as f64);
                result
            }
        };
        if let Err(error) = result {
            self.metrics.batches_failed.inc();
            if !matches!(error, StoreError::Unavailable { .. }) || matches!(self.link, Link::Up(_))
            {
                tracing::warn!(%error, requests = batch.len(), "store batch failed");
            }
            self.done.clear();
            for request in &batch {
                self.done.push(Completion::Failed {
                    ticket: request.ticket(),
                    error: error.clone(),
                });
            }
            if matches!(error, StoreError::Unavailable { .. }) {
                self.go_down(&error);
            }
        }
        let purged = batch
            .iter()
            .any(|r| matches!(r, StoreRequest::Purge { .. }));
        batch.clear();
        self.batch = batch;
        let any = !self.done.is_empty();
        for completion in self.done.drain(..) {
            // A logic core that has gone away no longer needs answers; the data is committed.
            let _ = self.completions.send(completion);
        }
        if any {
            self.completion_wake.wake();
        }
        if purged && matches!(self.link, Link::Up(_)) {
            self.drop_old_partitions();
        }
    }

    /// One transaction for the whole batch; completions in `self.done` on success.
    fn execute_batch(&mut self, batch: &[StoreRequest]) -> Result<(), StoreError> {
        self.ensure_partitions(batch)?;
        let Link::Up(conn) = &self.link else {
            unreachable!("checked by the caller")
        };
        let (client, st) = (&conn.client, &conn.statements);
        let done = &mut self.done;
        let work = async {
            let begin = client.batch_execute("BEGIN");
            // BEGIN is pipelined with the first segment's first round trip.
            let body = async {
                let mut at = 0;
                while at < batch.len() {
                    let run: Vec<AppendRef<'_>> =
                        batch[at..].iter().map_while(AppendRef::of).collect();
                    if run.is_empty() {
                        execute::one(client, st, &batch[at], done).await?;
                        at += 1;
                        if at == batch.len() {
                            client.batch_execute("COMMIT").await?;
                        }
                    } else {
                        at += run.len();
                        execute::append_run(client, st, &run, at == batch.len(), done).await?;
                    }
                }
                Ok::<(), tokio_postgres::Error>(())
            };
            tokio::try_join!(begin, body).map(drop)
        };
        let timeout = self.batch_timeout;
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, work).await });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let error = from_postgres(&e, client.is_closed());
                if !matches!(error, StoreError::Unavailable { .. }) {
                    let _ = self
                        .runtime
                        .block_on(async { client.batch_execute("ROLLBACK").await });
                }
                Err(error)
            }
            Err(_elapsed) => Err(StoreError::Unavailable {
                detail: format!("no answer within {:?}", self.batch_timeout).into(),
            }),
        }
    }

    /// Creates the partitions the batch's appends need (outside its transaction).
    fn ensure_partitions(&mut self, batch: &[StoreRequest]) -> Result<(), StoreError> {
        for request in batch {
            if let StoreRequest::Append { message, .. } = request {
                let time_ms = i64::try_from(message.time_ms).unwrap_or(i64::MAX);
                self.ensure_partition(schema::partition_of(time_ms))?;
            }
        }
        Ok(())
    }

    fn ensure_partition(&mut self, lower: i64) -> Result<(), StoreError> {
        if self.partitions.contains(&lower) {
            return Ok(());
        }
        let Link::Up(conn) = &self.link else {
            return Ok(());
        };
        let timeout = self.batch_timeout;
        self.runtime
            .block_on(async {
                tokio::time::timeout(timeout, schema::create_partition(&conn.client, lower)).await
            })
            .map_err(|_| StoreError::Unavailable {
                detail: "no answer while creating a partition".into(),
            })??;
        self.partitions.insert(lower);
        Ok(())
    }

    /// Today's and tomorrow's partitions, the retention cutoff moved up to now - retention,
    /// and the partitions wholly past it dropped.
    fn maintain(&mut self) {
        let result = (|| {
            let Link::Up(conn) = &self.link else {
                return Ok(());
            };
            if self.partitions.is_empty() {
                self.partitions = self
                    .runtime
                    .block_on(schema::existing_partitions(&conn.client))?;
            }
            let now = now_ms();
            let today = schema::partition_of(now);
            self.ensure_partition(today)?;
            self.ensure_partition(today + schema::PARTITION_MS)?;
            let cutoff =
                now.saturating_sub(self.retention.as_millis().min(i64::MAX as u128) as i64);
            let Link::Up(conn) = &self.link else {
                return Ok(());
            };
            self.runtime.block_on(conn.client.execute(
                "UPDATE retention SET cutoff_ms = greatest(cutoff_ms, $1)",
                &[&cutoff],
            ))?;
            Ok::<(), StoreError>(())
        })();
        match result {
            Ok(()) => self.drop_old_partitions(),
            Err(error) => {
                tracing::warn!(%error, "postgres: maintenance failed");
                if matches!(error, StoreError::Unavailable { .. }) {
                    self.go_down(&error);
                }
            }
        }
    }

    /// Drops every partition wholly below the retention cutoff.
    fn drop_old_partitions(&mut self) {
        let Link::Up(conn) = &self.link else {
            return;
        };
        let result = self.runtime.block_on(async {
            let cutoff: i64 = conn
                .client
                .query_one("SELECT cutoff_ms FROM retention", &[])
                .await?
                .get(0);
            let mut dropped = Vec::new();
            for &lower in self.partitions.iter() {
                if lower + schema::PARTITION_MS > cutoff {
                    break;
                }
                schema::drop_partition(&conn.client, lower).await?;
                dropped.push(lower);
            }
            Ok::<_, StoreError>(dropped)
        });
        match result {
            Ok(dropped) => {
                for lower in dropped {
                    self.partitions.remove(&lower);
                    tracing::info!(
                        from_ms = lower,
                        "postgres: dropped a partition past retention"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "postgres: dropping old partitions failed"),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}
