//! Request records: what the admin UI and `/api/requests` show, one per finished request.
//!
//! Kept in memory, newest last, up to a bound (a ring), and sent to live subscribers (the
//! UI's event stream). Pushing never waits on a subscriber: a subscriber that falls behind
//! the channel's capacity misses records and is told how many (`Lagged`), and the request
//! path only takes a mutex for a `VecDeque` push.

use crate::observe::capture::Captured;
use crate::observe::history::History;
use crate::observe::record::{usage, RequestRecord, UsageRow};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;

/// Records kept for `/api/requests` and the UI's first page.
pub const DEFAULT_KEPT: usize = 1_000;
/// Captured contents kept (the newest): each is up to 3 × 64 KiB, so at most ≈ 38 MB.
pub const CONTENT_KEPT: usize = 200;
/// Records a live subscriber may fall behind by before it misses some.
const LIVE_BACKLOG: usize = 256;

/// A request that was routed and is on its way: the live feed's `started` event (the UI
/// shows it in progress until its record arrives). Not kept anywhere.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub id: String,
    pub time_ms: u64,
    pub api: &'static str,
    pub model: String,
    pub route: String,
    pub session: Option<String>,
    /// Claude Code's subagent id (`x-claude-code-agent-id`), when a subagent asked.
    pub subagent: Option<String>,
    pub key: String,
    pub stream: bool,
}

/// What the live feed carries.
#[derive(Debug, Clone)]
pub enum Live {
    Started(Arc<Started>),
    Finished(Arc<RequestRecord>),
}

/// The recent records, the live feed and, with `--history`, the history file.
pub struct Records {
    kept: usize,
    recent: Mutex<VecDeque<Arc<RequestRecord>>>,
    /// Content of the newest requests that captured it, by request id. Memory only: content
    /// never goes to the history (it is the part most likely to hold what must not be kept).
    contents: Mutex<VecDeque<(String, Arc<Captured>)>>,
    live: broadcast::Sender<Live>,
    history: OnceLock<History>,
}

impl Default for Records {
    fn default() -> Self {
        Self::new(DEFAULT_KEPT)
    }
}

impl Records {
    pub fn new(kept: usize) -> Self {
        Self {
            kept: kept.max(1),
            recent: Mutex::new(VecDeque::with_capacity(kept.clamp(1, 1024))),
            contents: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LIVE_BACKLOG).0,
            history: OnceLock::new(),
        }
    }

    /// From now on every record also goes to `history` (set once, at start-up).
    pub fn attach_history(&self, history: History) {
        if self.history.set(history).is_err() {
            tracing::warn!("request history attached twice; keeping the first");
        }
    }

    pub fn history(&self) -> Option<&History> {
        self.history.get()
    }

    /// Keeps a finished request's record, and its content when it was captured.
    pub fn push(&self, record: RequestRecord, content: Option<Captured>) {
        if let Some(content) = content {
            let mut contents = self.contents.lock().unwrap_or_else(|e| e.into_inner());
            if contents.len() == CONTENT_KEPT {
                contents.pop_front();
            }
            contents.push_back((record.id.clone(), Arc::new(content)));
        }
        let record = Arc::new(record);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == self.kept {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        if let Some(h) = self.history.get() {
            h.record(record.clone());
        }
        // No subscriber is not an error.
        let _ = self.live.send(Live::Finished(record));
    }

    /// Up to `limit` records, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<RequestRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().take(limit).cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<RequestRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().find(|r| r.id == id).cloned()
    }

    /// The captured content of a recent request.
    pub fn content(&self, id: &str) -> Option<Arc<Captured>> {
        let contents = self.contents.lock().unwrap_or_else(|e| e.into_inner());
        contents
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|(_, c)| c.clone())
    }

    /// Usage from the records in memory (see [`usage`]).
    pub fn usage(&self, since_ms: u64) -> Vec<UsageRow> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        usage(recent.iter().map(|r| &**r), since_ms)
    }

    /// Tells live readers a request was routed; `make` runs only when somebody reads.
    pub fn started(&self, make: impl FnOnce() -> Started) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let _ = self.live.send(Live::Started(Arc::new(make())));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::access_log::AccessLog;
    use std::time::Instant;

    fn record(id: &str) -> RequestRecord {
        let mut log = AccessLog::new(id.to_owned(), Instant::now());
        log.model = "claude-sonnet-4-5".into();
        log.status = 200;
        log.fixes = vec!["context_clamp"];
        log.to_record(7, "")
    }

    #[test]
    fn keeps_the_newest_up_to_its_bound_newest_first() {
        let records = Records::new(3);
        for i in 0..5 {
            records.push(record(&format!("req_{i}")), None);
        }
        let ids: Vec<_> = records.recent(10).iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, ["req_4", "req_3", "req_2"]);
        assert_eq!(records.recent(1)[0].id, "req_4");
        assert!(records.get("req_1").is_none());
        assert_eq!(records.get("req_2").unwrap().fixes, ["context_clamp"]);
    }

    #[test]
    fn live_subscribers_get_each_record_and_a_slow_one_is_told_what_it_missed() {
        let records = Records::new(10);
        let mut fast = records.subscribe();
        let mut slow = records.subscribe();
        records.push(record("req_a"), None);
        assert!(matches!(fast.try_recv(), Ok(Live::Finished(r)) if r.id == "req_a"));
        let mut log = AccessLog::new("req_b".into(), Instant::now());
        log.model = "m".into();
        records.started(|| log.started_event());
        assert!(
            matches!(fast.try_recv(), Ok(Live::Started(s)) if s.id == "req_b" && s.model == "m")
        );
        assert!(records.get("req_b").is_none(), "a start is not a record");
        for i in 0..LIVE_BACKLOG + 4 {
            records.push(record(&format!("req_{i}")), None);
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(6))
        ));
    }

    #[test]
    fn a_record_serializes_without_empty_route_or_backend() {
        let v = serde_json::to_value(record("req_x")).unwrap();
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["model"], "claude-sonnet-4-5");
        assert_eq!(v["duration_ms"], 7);
        assert_eq!(v["fixes"], serde_json::json!(["context_clamp"]));
        assert_eq!(v["has_content"], false);
        assert!(v.get("content").is_none());
    }

    #[test]
    fn content_is_kept_for_the_newest_requests_only() {
        let records = Records::new(CONTENT_KEPT * 2);
        for i in 0..CONTENT_KEPT + 5 {
            let content = Captured {
                request: Some(format!("{{\"n\":{i}}}")),
                ..Captured::default()
            };
            records.push(record(&format!("req_{i}")), Some(content));
        }
        assert!(
            records.content("req_4").is_none(),
            "the oldest contents are let go"
        );
        assert!(records.get("req_4").is_some(), "their records stay");
        let newest = records
            .content(&format!("req_{}", CONTENT_KEPT + 4))
            .unwrap();
        assert_eq!(
            newest.request.as_deref(),
            Some(format!("{{\"n\":{}}}", CONTENT_KEPT + 4).as_str())
        );
        assert!(records.content("req_5").is_some());
    }
}
