//! The history in PostgreSQL: one table a fleet of proxies shares (each inserts its own
//! requests; every proxy's view lists them all).

use super::{HistoryError, Reader, Retention, Store};
use crate::observe::record::{RequestRecord, UsageRow};
use postgres::{Client, Config, NoTls};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS switchyard_requests (
        seq BIGSERIAL,
        id TEXT PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        model TEXT NOT NULL,
        route TEXT NOT NULL,
        backend TEXT NOT NULL,
        key TEXT NOT NULL,
        failed BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cache_read_tokens BIGINT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS switchyard_requests_time ON switchyard_requests (time_ms);
";

pub(super) struct Writer(Client);

/// Reads share one connection (the admin API is not a hot path).
pub(super) struct Readers(Mutex<Client>);

pub(super) fn open(config: &Config) -> Result<(Writer, Readers), HistoryError> {
    let mut writer = config.connect(NoTls)?;
    writer.batch_execute(SCHEMA)?;
    let reader = config.connect(NoTls)?;
    Ok((Writer(writer), Readers(Mutex::new(reader))))
}

impl Store for Writer {
    fn insert(&mut self, batch: &[Arc<RequestRecord>]) -> Result<(), HistoryError> {
        let mut tx = self.0.transaction()?;
        let stmt = tx.prepare(
            "INSERT INTO switchyard_requests (id, time_ms, model, route, backend, key, failed,
                 input_tokens, output_tokens, cache_read_tokens, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET time_ms = EXCLUDED.time_ms, record = EXCLUDED.record",
        )?;
        for r in batch {
            let json = serde_json::to_string(&**r)?;
            tx.execute(
                &stmt,
                &[
                    &r.id,
                    &(r.time_ms as i64),
                    &r.model,
                    &r.route.as_deref().unwrap_or(""),
                    &r.backend.as_deref().unwrap_or(""),
                    &r.key,
                    &i64::from(r.failed()),
                    &(r.input_tokens as i64),
                    &(r.output_tokens as i64),
                    &(r.cache_read_tokens as i64),
                    &json,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn retain(&mut self, keep: Retention, now_ms: u64) -> Result<(), HistoryError> {
        let oldest = now_ms.saturating_sub(keep.max_age.as_millis() as u64) as i64;
        self.0.execute(
            "DELETE FROM switchyard_requests WHERE time_ms < $1",
            &[&oldest],
        )?;
        self.0.execute(
            "DELETE FROM switchyard_requests WHERE seq IN (
                 SELECT seq FROM switchyard_requests ORDER BY time_ms DESC, seq DESC OFFSET $1)",
            &[&(keep.max_rows as i64)],
        )?;
        Ok(())
    }
}

impl Readers {
    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reader for Readers {
    fn recent(&self, limit: usize) -> Result<Vec<Value>, HistoryError> {
        let rows = self.client().query(
            "SELECT record FROM switchyard_requests ORDER BY time_ms DESC, seq DESC LIMIT $1",
            &[&(limit as i64)],
        )?;
        rows.iter()
            .map(|r| Ok(serde_json::from_str(r.get::<_, &str>(0))?))
            .collect()
    }

    fn get(&self, id: &str) -> Result<Option<Value>, HistoryError> {
        let row = self.client().query_opt(
            "SELECT record FROM switchyard_requests WHERE id = $1",
            &[&id],
        )?;
        Ok(row
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)))
            .transpose()?)
    }

    fn usage(&self, since_ms: u64) -> Result<Vec<UsageRow>, HistoryError> {
        // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
        let rows = self.client().query(
            "SELECT model, route, backend, key, COUNT(*), SUM(failed)::BIGINT,
                    SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT,
                    SUM(cache_read_tokens)::BIGINT
             FROM switchyard_requests WHERE time_ms >= $1
             GROUP BY model, route, backend, key",
            &[&(since_ms as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                model: r.get(0),
                route: r.get(1),
                backend: r.get(2),
                key: r.get(3),
                requests: r.get::<_, i64>(4) as u64,
                failed: r.get::<_, i64>(5) as u64,
                input_tokens: r.get::<_, i64>(6) as u64,
                output_tokens: r.get::<_, i64>(7) as u64,
                cache_read_tokens: r.get::<_, i64>(8) as u64,
            })
            .collect())
    }
}
