//! Request history that outlives a restart: records go to an SQLite file (`--history`) or
//! to PostgreSQL (`--history-postgres`, one history for a fleet of proxies).
//!
//! The request path never waits for the database: `record` puts the record on a bounded
//! queue (`try_send`; when the queue is full the record is counted as dropped, not waited
//! for) and one writer thread inserts what has queued in one transaction, then applies the
//! retention (age and row count) now and then. Reads (the admin API) run on
//! `spawn_blocking` threads with their own connection.
//!
//! Each row keeps the whole record as JSON (what the UI shows) beside the columns queries
//! filter and group on.

mod postgres;
mod sqlite;

use crate::observe::record::{now_ms, RequestRecord, UsageRow};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 4_096;
/// Most records inserted in one transaction.
const BATCH: usize = 512;
/// After a record arrives the writer gathers more for this long before it commits: one
/// transaction for a burst instead of one per request (`bench/run --history`).
const GATHER: Duration = Duration::from_millis(50);
/// Retention runs at least this often.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("request history {place}: {source}")]
    Sqlite {
        place: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The DSN is never part of the message (it may hold a password).
    #[error("request history (PostgreSQL): {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("request history: {0}")]
    Record(#[from] serde_json::Error),
}

/// How long and how much history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
    /// SQLite only: the most the table's pages may take, checked after every write (a file
    /// on a size-limited volume must never outgrow it). PostgreSQL manages its own storage;
    /// there rows and age bound the history.
    pub max_bytes: Option<u64>,
}

/// The writer's side of a history database.
trait Store: Send {
    /// Inserts the batch in one transaction (a record already there is replaced).
    fn insert(&mut self, batch: &[Arc<RequestRecord>]) -> Result<(), HistoryError>;
    /// Deletes rows older than the age limit, then the oldest beyond the row limit, then (a
    /// store that measures its size) the oldest until it is within `max_bytes`.
    fn retain(&mut self, keep: Retention, now_ms: u64) -> Result<(), HistoryError>;
    /// Bytes the history takes, when the store can tell cheaply (SQLite: its used pages).
    fn used_bytes(&mut self) -> Result<Option<u64>, HistoryError> {
        Ok(None)
    }
}

/// The readers' side.
trait Reader: Send + Sync {
    /// Up to `limit` records, newest first.
    fn recent(&self, limit: usize) -> Result<Vec<Value>, HistoryError>;
    fn get(&self, id: &str) -> Result<Option<Value>, HistoryError>;
    /// Rows of [`UsageRow`] since `since_ms`, in any order.
    fn usage(&self, since_ms: u64) -> Result<Vec<UsageRow>, HistoryError>;
}

/// What the writer is sent.
enum Msg {
    Record(Arc<RequestRecord>),
    /// Write what came before, apply the retention, stop.
    Close,
}

pub struct History {
    /// For log lines: the file, or "PostgreSQL" (never the DSN).
    place: String,
    queue: SyncSender<Msg>,
    dropped: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Box<dyn Reader>,
}

impl History {
    /// Opens (creating if need be) an SQLite file and starts its writer.
    pub fn sqlite(path: &Path, keep: Retention) -> Result<Self, HistoryError> {
        let (store, reader) = sqlite::open(path)?;
        Ok(Self::start(
            path.display().to_string(),
            Box::new(store),
            Box::new(reader),
            keep,
        ))
    }

    /// Connects to PostgreSQL (creating the table if need be) and starts the writer. Blocks:
    /// call it from a thread that is not driving async tasks (`spawn_blocking`).
    pub fn postgres(config: &::postgres::Config, keep: Retention) -> Result<Self, HistoryError> {
        let (store, reader) = postgres::open(config)?;
        Ok(Self::start(
            "PostgreSQL".into(),
            Box::new(store),
            Box::new(reader),
            keep,
        ))
    }

    fn start(
        place: String,
        store: Box<dyn Store>,
        reader: Box<dyn Reader>,
        keep: Retention,
    ) -> Self {
        let (queue, rx) = sync_channel(QUEUE);
        let writer_place = place.clone();
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(store, &writer_place, rx, keep))
            .expect("a thread can be spawned");
        Self {
            place,
            queue,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
            reader,
        }
    }

    /// Queues a record; never waits.
    pub fn record(&self, r: Arc<RequestRecord>) {
        match self.queue.try_send(Msg::Record(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(history = %self.place, "request history cannot keep up; records dropped (counted in /api/requests)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records not written because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer (shutdown), waiting up to `within`.
    pub fn close(&self, within: Duration) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = self.queue.send(Msg::Close);
        let deadline = Instant::now() + within;
        while !writer.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if writer.is_finished() {
            let _ = writer.join();
        } else {
            tracing::warn!(history = %self.place, "request history: writer still busy at shutdown");
        }
    }

    /// Up to `limit` records, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Value>, HistoryError> {
        self.reader.recent(limit)
    }

    pub fn get(&self, id: &str) -> Result<Option<Value>, HistoryError> {
        self.reader.get(id)
    }

    /// Requests, failures and tokens per model, route, backend and key since `since_ms`.
    pub fn usage(&self, since_ms: u64) -> Result<Vec<UsageRow>, HistoryError> {
        let mut rows = self.reader.usage(since_ms)?;
        crate::observe::record::sort_usage(&mut rows);
        Ok(rows)
    }
}

/// The writer: a batch per wake-up, retention now and then; ends at `Close` or when every
/// sender is gone.
fn write_loop(mut store: Box<dyn Store>, place: &str, rx: Receiver<Msg>, keep: Retention) {
    let mut last_retention = Instant::now();
    let mut open = true;
    while open {
        let first = match rx.recv_timeout(RETENTION_EVERY) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Arc<RequestRecord>> = Vec::new();
        let until = Instant::now() + GATHER;
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                Msg::Record(r) => batch.push(r),
                Msg::Close => {
                    open = false;
                    break;
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            next = if batch.len() < BATCH {
                rx.recv_timeout(left).ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            if let Err(e) = store.insert(&batch) {
                tracing::warn!(history = %place, error = %e, records = batch.len(), "request history: write failed");
            }
        }
        let oversize = !batch.is_empty()
            && keep
                .max_bytes
                .is_some_and(|max| matches!(store.used_bytes(), Ok(Some(used)) if used > max));
        if last_retention.elapsed() >= RETENTION_EVERY || !open || oversize {
            if let Err(e) = store.retain(keep, now_ms()) {
                tracing::warn!(history = %place, error = %e, "request history: retention failed");
            }
            last_retention = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::access_log::AccessLog;
    use crate::observe::record::usage;
    use std::path::PathBuf;

    fn record(id: &str, time_ms: u64, model: &str, status: u16, tokens: u64) -> RequestRecord {
        let mut log = AccessLog::new(id.into(), Instant::now());
        log.model = model.into();
        log.route = "code".into();
        log.backend = "vllm".into();
        log.status = status;
        log.usage.input_tokens = tokens;
        log.usage.output_tokens = tokens / 10;
        let mut r = log.to_record(5, "");
        r.time_ms = time_ms;
        r
    }

    /// The ids of the newest ten records, newest first.
    fn newest_ids(h: &History) -> Vec<Value> {
        h.recent(10)
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect()
    }

    /// Opens the same history again each time it is called.
    type Opener = Box<dyn Fn(Retention) -> History>;

    fn temp_db(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("switchyard-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("history.db")
    }

    /// The SQLite store, and the PostgreSQL one when `SWITCHYARD_TEST_POSTGRES` names a
    /// server (`.ci/run` starts one): a fresh database per test.
    fn stores(name: &str) -> Vec<(&'static str, Opener)> {
        let path = temp_db(name);
        let mut out: Vec<(&'static str, Opener)> = vec![(
            "sqlite",
            Box::new(move |keep| History::sqlite(&path, keep).unwrap()),
        )];
        match std::env::var("SWITCHYARD_TEST_POSTGRES") {
            Ok(dsn) => {
                let base: ::postgres::Config = dsn.parse().expect("SWITCHYARD_TEST_POSTGRES parses");
                let db = format!("switchyard_test_{name}_{}", std::process::id());
                let mut admin = base.connect(::postgres::NoTls).expect("test PostgreSQL reachable");
                // One statement each: a multi-statement string runs as one transaction, and
                // these cannot.
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}")).unwrap();
                admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
                let mut config = base.clone();
                config.dbname(&db);
                out.push((
                    "postgres",
                    Box::new(move |keep| History::postgres(&config, keep).unwrap()),
                ));
            }
            Err(_) => eprintln!(
                "SKIPPED the PostgreSQL store in history::tests::{name}: SWITCHYARD_TEST_POSTGRES is not set (.ci/run sets it)"
            ),
        }
        out
    }

    const KEEP_ALL: Retention = Retention {
        max_age: Duration::from_secs(1_000_000_000),
        max_rows: 1_000_000,
        max_bytes: None,
    };

    #[test]
    fn records_survive_a_reopen_newest_first() {
        for (store, open) in stores("reopen") {
            let h = open(KEEP_ALL);
            let now = now_ms();
            for (i, t) in [now - 3000, now - 2000, now - 1000].into_iter().enumerate() {
                h.record(Arc::new(record(&format!("req_{i}"), t, "m", 200, 100)));
            }
            h.close(Duration::from_secs(10));
            let h = open(KEEP_ALL);
            let ids = newest_ids(&h);
            assert_eq!(ids, ["req_2", "req_1", "req_0"], "{store}");
            assert_eq!(
                h.get("req_1").unwrap().unwrap()["time_ms"],
                now - 2000,
                "{store}"
            );
            assert!(h.get("req_9").unwrap().is_none(), "{store}");
            h.close(Duration::from_secs(10));
        }
    }

    #[test]
    fn retention_drops_by_age_then_by_count() {
        for (store, open) in stores("retention") {
            let keep = Retention {
                max_age: Duration::from_secs(3600),
                max_rows: 2,
                max_bytes: None,
            };
            let h = open(keep);
            let now = now_ms();
            // Two hours old: beyond the age limit.
            h.record(Arc::new(record("req_old", now - 7_200_000, "m", 200, 1)));
            for i in 0..4 {
                h.record(Arc::new(record(
                    &format!("req_{i}"),
                    now - 1000 + i,
                    "m",
                    200,
                    1,
                )));
            }
            h.close(Duration::from_secs(10)); // closing applies the retention once more
            let h = open(keep);
            let ids = newest_ids(&h);
            assert_eq!(ids, ["req_3", "req_2"], "{store}");
            h.close(Duration::from_secs(10));
        }
    }

    /// SQLite's size bound holds after every write: the oldest rows go, the newest stay,
    /// and the file stops growing (freed pages are reused).
    #[test]
    fn sqlite_stays_within_its_size_bound() {
        let path = temp_db("size");
        let max: u64 = 256 * 1024;
        let keep = Retention {
            max_bytes: Some(max),
            ..KEEP_ALL
        };
        let h = History::sqlite(&path, keep).unwrap();
        let now = now_ms();
        for round in 0..6u64 {
            for i in 0..500u64 {
                let n = round * 500 + i;
                h.record(Arc::new(record(
                    &format!("req_{n:05}"),
                    now - 10_000 + n,
                    "m",
                    200,
                    1,
                )));
            }
            // Let the writer take the round (the queue holds 4,096; nothing is dropped).
            std::thread::sleep(Duration::from_millis(400));
        }
        h.close(Duration::from_secs(10));
        assert_eq!(h.dropped(), 0);
        drop(h);
        // The last connection closed: the WAL is checkpointed into the file, whose size is the
        // most pages it ever used. Unbounded, 3,000 records of ≈ 550 bytes take ≈ 1.6 MB.
        let file = std::fs::metadata(&path).unwrap().len();
        let (mut store, _) = sqlite::open(&path).unwrap();
        let used = store.used_bytes().unwrap().unwrap();
        assert!(used <= max, "{used} bytes used, bound {max}");
        assert!(
            file <= 2 * max,
            "the file reached {file} bytes, bound {max}"
        );
        let h = History::sqlite(&path, keep).unwrap();
        let rows = h.recent(10_000).unwrap();
        eprintln!(
            "size bound {max}: {used} bytes used by {} rows, file {file} bytes",
            rows.len()
        );
        assert_eq!(rows[0]["id"], "req_02999", "the newest stays");
        assert!(
            rows.len() < 3_000 && rows.len() > 100,
            "{} rows kept",
            rows.len()
        );
        assert!(h.get("req_00000").unwrap().is_none());
        h.close(Duration::from_secs(10));
    }

    /// The SQL aggregation and the in-memory one (used without a history) agree.
    #[test]
    fn usage_in_sql_equals_usage_in_memory() {
        for (store, open) in stores("usage") {
            let h = open(KEEP_ALL);
            let now = now_ms();
            let records = vec![
                record("a", now - 10, "claude-sonnet-4-5", 200, 1000),
                record("b", now - 20, "claude-sonnet-4-5", 200, 3000),
                record("c", now - 30, "claude-sonnet-4-5", 529, 0),
                record("d", now - 40, "claude-haiku-4-5", 200, 50),
                record("e", now - 90_000_000, "claude-haiku-4-5", 200, 7), // before `since`
            ];
            for r in &records {
                h.record(Arc::new(r.clone()));
            }
            h.close(Duration::from_secs(10));
            let h = open(KEEP_ALL);
            let since = now - 3_600_000;
            let sql = h.usage(since).unwrap();
            assert_eq!(sql, usage(records.iter(), since), "{store}");
            assert_eq!(sql.len(), 2, "{store}");
            let sonnet = &sql[0];
            assert_eq!(sonnet.model, "claude-sonnet-4-5");
            assert_eq!((sonnet.requests, sonnet.failed), (3, 1), "{store}");
            assert_eq!(
                (sonnet.input_tokens, sonnet.output_tokens),
                (4000, 400),
                "{store}"
            );
            assert_eq!((sql[1].requests, sql[1].input_tokens), (1, 50), "{store}");
            h.close(Duration::from_secs(10));
        }
    }
}
