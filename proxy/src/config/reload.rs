//! Hot reload of the config file.
//!
//! The file is polled (content, not mtime: Kubernetes ConfigMap volumes swap a symlink, which
//! defeats inotify on the file itself). A valid change is swapped in atomically; an invalid one
//! is refused with a log line and a metric, and the last good config keeps serving. Requests in
//! flight keep the runtime they started with.

use crate::config::Runtime;
use crate::observe::metrics::{ResultLabels, VersionLabels};
use crate::state::AppState;
use crate::upstream::health::HealthChecks;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::RoutingSnapshot;

const POLL: Duration = Duration::from_millis(500);

/// Reads a config file into a validated snapshot (YAML snapshot or LiteLLM config).
pub type Loader = fn(&Path) -> Result<RoutingSnapshot, String>;

pub async fn watch(app: Arc<AppState>, path: PathBuf, health: Arc<HealthChecks>, load: Loader) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(now) = std::fs::read(&path) else {
            continue;
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        last = Some(now);
        apply(&app, &path, &health, load);
    }
}

/// Loads, validates and swaps in the file's config. Returns whether it was applied.
pub fn apply(app: &AppState, path: &Path, health: &HealthChecks, load: Loader) -> bool {
    let current = app.runtime.load_full();
    let built = load(path).and_then(|snapshot| {
        Runtime::build_from(snapshot, Some(&current), None).map_err(|e| e.to_string())
    });
    match built {
        Ok(next) => {
            if next.version == current.version {
                return false;
            }
            install(app, health, next, &current.version);
            true
        }
        Err(e) => {
            refuse(app, &e, &current.version);
            false
        }
    }
}

/// Swaps `next` in atomically (requests in flight keep the runtime they started with),
/// restarts the health checks for it and counts an applied reload. Shared with cluster mode.
pub fn install(app: &AppState, health: &HealthChecks, next: Runtime, from: &str) {
    tracing::info!(from = %from, to = %next.version, "config reloaded");
    app.metrics.config_info.clear();
    app.metrics
        .config_info
        .get_or_create(&VersionLabels {
            version: next.version.clone(),
        })
        .set(1);
    health.replace(&next);
    app.note_reload(&next.version, None);
    app.runtime.store(Arc::new(next));
    app.metrics
        .reloads
        .get_or_create(&ResultLabels { result: "applied" })
        .inc();
}

/// Logs and counts a refused config change; the last good config keeps serving.
pub fn refuse(app: &AppState, error: &dyn std::fmt::Display, serving: &str) {
    tracing::error!(error = %error, version = %serving, "config change refused; still serving the last good config");
    app.note_reload(serving, Some(error.to_string()));
    app.metrics
        .reloads
        .get_or_create(&ResultLabels { result: "rejected" })
        .inc();
}
