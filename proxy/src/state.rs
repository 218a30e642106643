//! What every request shares: the runtime (swapped on reload), the upstream client, metrics,
//! readiness, the global in-flight cap and the count cache.

use crate::config::Runtime;
use crate::error::{ApiError, ErrorKind};
use crate::observe::metrics::{Metrics, ReasonLabels, VersionLabels};
use crate::observe::records::Records;
use crate::upstream;
use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    /// Recent request records and their live feed (admin UI, `/api/requests`).
    pub records: Records,
    /// The last config changes, applied or refused, newest last (admin API health view).
    reloads: Mutex<VecDeque<ReloadEvent>>,
    pub ready: AtomicBool,
    /// Requests being served now, all keys and routes (`server.maxInFlight`).
    in_flight: Arc<AtomicUsize>,
    pub counts: CountCache,
}

impl AppState {
    pub fn new(runtime: Runtime) -> Arc<Self> {
        let metrics = Metrics::new();
        metrics
            .config_info
            .get_or_create(&VersionLabels {
                version: runtime.version.clone(),
            })
            .set(1);
        let version = runtime.version.clone();
        let state = Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            client: upstream::client(),
            metrics,
            records: Records::default(),
            reloads: Mutex::new(VecDeque::new()),
            ready: AtomicBool::new(true),
            in_flight: Arc::new(AtomicUsize::new(0)),
            counts: CountCache::default(),
        });
        state.note_reload(&version, None);
        state
    }

    /// A place under `server.maxInFlight`, held until the answer (a stream: its last byte)
    /// is sent; over the cap → 529 `overloaded_error` at once, before the body is read.
    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn enter(&self) -> Result<InFlightSlot, ApiError> {
        let max = self.runtime.load().settings.max_in_flight;
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlightSlot(self.in_flight.clone());
        if before < max {
            return Ok(slot);
        }
        self.refused("max_in_flight");
        Err(ApiError::new(
            ErrorKind::Overloaded,
            format!("the gateway is serving its limit of {max} requests; retry shortly"),
        ))
    }

    /// Notes a config change: `error` is `None` when it was applied.
    pub fn note_reload(&self, version: &str, error: Option<String>) {
        let mut reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        if reloads.len() == RELOADS_KEPT {
            reloads.pop_front();
        }
        reloads.push_back(ReloadEvent {
            time_ms: crate::observe::record::now_ms(),
            result: if error.is_none() {
                "applied"
            } else {
                "refused"
            },
            version: version.to_owned(),
            error,
        });
    }

    /// The last config changes, newest first.
    pub fn reloads(&self) -> Vec<ReloadEvent> {
        let reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        reloads.iter().rev().cloned().collect()
    }

    pub fn refused(&self, reason: &'static str) {
        let labels = ReasonLabels { reason };
        self.metrics.requests_refused.get_or_create(&labels).inc();
    }
}

/// Config changes kept for the health view.
const RELOADS_KEPT: usize = 20;

/// A config change: applied (now serving `version`) or refused (still serving `version`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadEvent {
    pub time_ms: u64,
    pub result: &'static str,
    pub version: String,
    pub error: Option<String>,
}

/// One request's place under `maxInFlight`; given back when dropped.
pub struct InFlightSlot(pub(crate) Arc<AtomicUsize>);

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A fresh id for a request or message (`req_…`, `msg_…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

use crate::upstream::count_cache::CountCache;
