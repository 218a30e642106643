//! Request history that outlives a restart: records go to an SQLite file (`--history`).
//!
//! The request path never waits for the disk: `record` puts the record on a bounded queue
//! (`try_send`; when the queue is full the record is counted as dropped, not waited for)
//! and one writer thread inserts what has queued in one transaction, then applies the
//! retention (age and row count). Reads open their own connection (WAL mode lets them run
//! beside the writer) and are called from `spawn_blocking`.
//!
//! Each row keeps the whole record as JSON (what the UI shows) beside the columns queries
//! filter and group on.

use crate::observe::records::{RequestRecord, UsageRow};
use rusqlite::{params, Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 4_096;
/// Most records inserted in one transaction.
const BATCH: usize = 512;
/// Retention runs at least this often.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("request history {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("request history: {0}")]
    Record(#[from] serde_json::Error),
}

/// How long and how much history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
}

/// What the writer is sent.
enum Msg {
    Record(Arc<RequestRecord>),
    /// Write what came before, apply the retention, stop.
    Close,
}

pub struct History {
    path: PathBuf,
    queue: SyncSender<Msg>,
    dropped: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS requests (
        id TEXT PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        model TEXT NOT NULL,
        route TEXT NOT NULL,
        backend TEXT NOT NULL,
        key TEXT NOT NULL,
        failed INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS requests_time ON requests (time_ms);
";

impl History {
    /// Opens (creating if need be) the database and starts its writer.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, HistoryError> {
        let conn = open(path, false)?;
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        let (queue, rx) = sync_channel(QUEUE);
        let writer_path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(conn, &writer_path, rx, retention))
            .expect("a thread can be spawned");
        Ok(Self {
            path: path.to_owned(),
            queue,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues a record; never waits.
    pub fn record(&self, r: Arc<RequestRecord>) {
        match self.queue.try_send(Msg::Record(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(path = %self.path.display(), "request history cannot keep up; records dropped (counted in /api/requests)");
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
            tracing::warn!("request history: writer still busy at shutdown");
        }
    }

    /// Up to `limit` records, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Value>, HistoryError> {
        let conn = open(&self.path, true)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT record FROM requests ORDER BY time_ms DESC, rowid DESC LIMIT ?1",
            )
            .map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map(params![limit as i64], |row| row.get::<_, String>(0))
            .map_err(sqlite(&self.path))?;
        let mut out = Vec::new();
        for text in rows {
            out.push(serde_json::from_str(&text.map_err(sqlite(&self.path))?)?);
        }
        Ok(out)
    }

    pub fn get(&self, id: &str) -> Result<Option<Value>, HistoryError> {
        let conn = open(&self.path, true)?;
        let text: Option<String> = conn
            .query_row(
                "SELECT record FROM requests WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(sqlite(&self.path))?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// Requests, failures and tokens per model, route, backend and key since `since_ms`.
    pub fn usage(&self, since_ms: u64) -> Result<Vec<UsageRow>, HistoryError> {
        let conn = open(&self.path, true)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT model, route, backend, key, COUNT(*), SUM(failed), SUM(input_tokens),
                        SUM(output_tokens), SUM(cache_read_tokens)
                 FROM requests WHERE time_ms >= ?1
                 GROUP BY model, route, backend, key",
            )
            .map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map(params![since_ms as i64], |r| {
                Ok(UsageRow {
                    model: r.get(0)?,
                    route: r.get(1)?,
                    backend: r.get(2)?,
                    key: r.get(3)?,
                    requests: r.get::<_, i64>(4)? as u64,
                    failed: r.get::<_, i64>(5)? as u64,
                    input_tokens: r.get::<_, i64>(6)? as u64,
                    output_tokens: r.get::<_, i64>(7)? as u64,
                    cache_read_tokens: r.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(sqlite(&self.path))?;
        let mut out: Vec<UsageRow> = rows.collect::<Result<_, _>>().map_err(sqlite(&self.path))?;
        crate::observe::records::sort_usage(&mut out);
        Ok(out)
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn open(path: &Path, read_only: bool) -> Result<Connection, HistoryError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(sqlite(path))?;
    Ok(conn)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The writer: a batch per wake-up, retention now and then; ends at the close marker or when
/// every sender is gone.
fn write_loop(mut conn: Connection, path: &Path, rx: Receiver<Msg>, keep: Retention) {
    let mut last_retention = Instant::now();
    let mut open = true;
    while open {
        let first = match rx.recv_timeout(RETENTION_EVERY) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Arc<RequestRecord>> = Vec::new();
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                Msg::Record(r) => batch.push(r),
                Msg::Close => {
                    open = false;
                    break;
                }
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = insert(&mut conn, &batch) {
            tracing::warn!(path = %path.display(), error = %e, records = batch.len(), "request history: write failed");
        }
        if last_retention.elapsed() >= RETENTION_EVERY || !open {
            if let Err(e) = retain(&conn, keep, now_ms()) {
                tracing::warn!(path = %path.display(), error = %e, "request history: retention failed");
            }
            last_retention = Instant::now();
        }
    }
}

fn insert(conn: &mut Connection, batch: &[Arc<RequestRecord>]) -> rusqlite::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO requests (id, time_ms, model, route, backend, key, failed,
                 input_tokens, output_tokens, cache_read_tokens, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for r in batch {
            let json = serde_json::to_string(&**r).expect("a record serializes");
            stmt.execute(params![
                r.id,
                r.time_ms as i64,
                r.model,
                r.route.as_deref().unwrap_or(""),
                r.backend.as_deref().unwrap_or(""),
                r.key,
                r.failed() as i64,
                r.input_tokens as i64,
                r.output_tokens as i64,
                r.cache_read_tokens as i64,
                json,
            ])?;
        }
    }
    tx.commit()
}

/// Deletes rows older than the age limit, then the oldest beyond the row limit.
fn retain(conn: &Connection, keep: Retention, now_ms: u64) -> rusqlite::Result<()> {
    let oldest = now_ms.saturating_sub(keep.max_age.as_millis() as u64);
    conn.execute(
        "DELETE FROM requests WHERE time_ms < ?1",
        params![oldest as i64],
    )?;
    conn.execute(
        "DELETE FROM requests WHERE rowid IN (
             SELECT rowid FROM requests ORDER BY time_ms DESC, rowid DESC LIMIT -1 OFFSET ?1)",
        params![keep.max_rows as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::access_log::AccessLog;
    use crate::observe::records::usage;

    fn record(id: &str, time_ms: u64, model: &str, status: u16, tokens: u64) -> RequestRecord {
        let mut log = AccessLog::new(id.into(), Instant::now());
        log.model = model.into();
        log.route = "code".into();
        log.backend = "vllm".into();
        log.status = status;
        log.usage.input_tokens = tokens;
        log.usage.output_tokens = tokens / 10;
        let mut r = RequestRecord::from_log(&log, 5, "");
        r.time_ms = time_ms;
        r
    }

    fn temp_db(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("switchyard-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("history.db")
    }

    const KEEP_ALL: Retention = Retention {
        max_age: Duration::from_secs(1_000_000_000),
        max_rows: 1_000_000,
    };

    #[test]
    fn records_survive_a_reopen_newest_first() {
        let path = temp_db("reopen");
        let h = History::open(&path, KEEP_ALL).unwrap();
        let now = now_ms();
        for (i, t) in [now - 3000, now - 2000, now - 1000].into_iter().enumerate() {
            h.record(Arc::new(record(&format!("req_{i}"), t, "m", 200, 100)));
        }
        h.close(Duration::from_secs(10));
        let h = History::open(&path, KEEP_ALL).unwrap();
        let ids: Vec<_> = h
            .recent(10)
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect();
        assert_eq!(ids, ["req_2", "req_1", "req_0"]);
        assert_eq!(h.get("req_1").unwrap().unwrap()["time_ms"], now - 2000);
        assert!(h.get("req_9").unwrap().is_none());
        h.close(Duration::from_secs(10));
    }

    #[test]
    fn retention_drops_by_age_then_by_count() {
        let path = temp_db("retention");
        let keep = Retention {
            max_age: Duration::from_secs(3600),
            max_rows: 2,
        };
        let h = History::open(&path, keep).unwrap();
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
        let h = History::open(&path, keep).unwrap();
        let ids: Vec<_> = h
            .recent(10)
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect();
        assert_eq!(ids, ["req_3", "req_2"]);
        h.close(Duration::from_secs(10));
    }

    /// The SQL aggregation and the in-memory one (used without a history file) agree.
    #[test]
    fn usage_in_sql_equals_usage_in_memory() {
        let path = temp_db("usage");
        let h = History::open(&path, KEEP_ALL).unwrap();
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
        let h = History::open(&path, KEEP_ALL).unwrap();
        let since = now - 3_600_000;
        let sql = h.usage(since).unwrap();
        let mem = usage(records.iter(), since);
        assert_eq!(sql, mem);
        assert_eq!(sql.len(), 2);
        let sonnet = &sql[0];
        assert_eq!(sonnet.model, "claude-sonnet-4-5");
        assert_eq!((sonnet.requests, sonnet.failed), (3, 1));
        assert_eq!((sonnet.input_tokens, sonnet.output_tokens), (4000, 400));
        assert_eq!((sql[1].requests, sql[1].input_tokens), (1, 50));
        h.close(Duration::from_secs(10));
    }
}
