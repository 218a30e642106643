//! The history in an SQLite file (WAL mode: readers beside the one writer).

use super::{HistoryError, Reader, Retention, Store};
use crate::observe::record::{RequestRecord, UsageRow};
use rusqlite::{params, Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA journal_size_limit = 8388608;
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

pub(super) struct Writer {
    conn: Connection,
    path: PathBuf,
}

pub(super) struct Files {
    path: PathBuf,
}

pub(super) fn open(path: &Path) -> Result<(Writer, Files), HistoryError> {
    let conn = connect(path, false)?;
    conn.execute_batch(SCHEMA).map_err(err(path))?;
    let path = path.to_owned();
    Ok((
        Writer {
            conn,
            path: path.clone(),
        },
        Files { path },
    ))
}

fn err(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        place: path.display().to_string(),
        source,
    }
}

fn connect(path: &Path, read_only: bool) -> Result<Connection, HistoryError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(err(path))?;
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(err(path))?;
    Ok(conn)
}

impl Store for Writer {
    fn insert(&mut self, batch: &[Arc<RequestRecord>]) -> Result<(), HistoryError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(err(&path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO requests (id, time_ms, model, route, backend, key,
                         failed, input_tokens, output_tokens, cache_read_tokens, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(err(&path))?;
            for r in batch {
                let json = serde_json::to_string(&**r)?;
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
                ])
                .map_err(err(&path))?;
            }
        }
        tx.commit().map_err(err(&path))
    }

    fn retain(&mut self, keep: Retention, now_ms: u64) -> Result<(), HistoryError> {
        let oldest = now_ms.saturating_sub(keep.max_age.as_millis() as u64);
        let e = err(&self.path);
        self.conn
            .execute(
                "DELETE FROM requests WHERE time_ms < ?1",
                params![oldest as i64],
            )
            .map_err(&e)?;
        self.keep_newest(keep.max_rows)?;
        let Some(max) = keep.max_bytes else {
            return Ok(());
        };
        let used = self.used()?;
        if used > max {
            // Rows take about the same room each: keep the newest share that fills 90% of
            // the bound (a margin, so the next writes do not cross it at once).
            let rows: i64 = self
                .conn
                .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
                .map_err(&e)?;
            let share = (max as f64 * 0.9) / used as f64;
            self.keep_newest((rows as f64 * share) as u64)?;
        }
        Ok(())
    }

    fn used_bytes(&mut self) -> Result<Option<u64>, HistoryError> {
        self.used().map(Some)
    }
}

impl Writer {
    /// Bytes of the pages the database uses (its file less the free pages it will reuse).
    fn used(&self) -> Result<u64, HistoryError> {
        let used: i64 = self
            .conn
            .query_row(
                "SELECT (c.page_count - f.freelist_count) * s.page_size
                 FROM pragma_page_count() c, pragma_freelist_count() f, pragma_page_size() s",
                [],
                |r| r.get(0),
            )
            .map_err(err(&self.path))?;
        Ok(used.max(0) as u64)
    }

    /// Deletes all but the newest `rows` records.
    fn keep_newest(&self, rows: u64) -> Result<(), HistoryError> {
        self.conn
            .execute(
                "DELETE FROM requests WHERE rowid IN (
                     SELECT rowid FROM requests ORDER BY time_ms DESC, rowid DESC LIMIT -1 OFFSET ?1)",
                params![rows as i64],
            )
            .map_err(err(&self.path))?;
        Ok(())
    }
}

impl Reader for Files {
    fn recent(&self, limit: usize) -> Result<Vec<Value>, HistoryError> {
        let conn = connect(&self.path, true)?;
        let e = err(&self.path);
        let mut stmt = conn
            .prepare("SELECT record FROM requests ORDER BY time_ms DESC, rowid DESC LIMIT ?1")
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![limit as i64], |row| row.get::<_, String>(0))
            .map_err(&e)?;
        let mut out = Vec::new();
        for text in rows {
            out.push(serde_json::from_str(&text.map_err(&e)?)?);
        }
        Ok(out)
    }

    fn get(&self, id: &str) -> Result<Option<Value>, HistoryError> {
        let conn = connect(&self.path, true)?;
        let text = conn
            .query_row(
                "SELECT record FROM requests WHERE id = ?1",
                params![id],
                |row| row.get::<_, String>(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(err(&self.path))?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn usage(&self, since_ms: u64) -> Result<Vec<UsageRow>, HistoryError> {
        let conn = connect(&self.path, true)?;
        let e = err(&self.path);
        let mut stmt = conn
            .prepare(
                "SELECT model, route, backend, key, COUNT(*), SUM(failed), SUM(input_tokens),
                        SUM(output_tokens), SUM(cache_read_tokens)
                 FROM requests WHERE time_ms >= ?1
                 GROUP BY model, route, backend, key",
            )
            .map_err(&e)?;
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
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }
}
