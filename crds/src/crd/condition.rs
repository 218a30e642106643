//! Status conditions in the shape kstatus (Argo CD, Flux) reads: `Ready` says whether the
//! object does its job, `Reconciling` that the operator is still moving towards the spec,
//! `Stalled` that it cannot get there without a change from the user.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::chrono::{DateTime, Utc};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// Something is off but not fatal (an unknown parser name: vLLM versions differ, so the
/// operator cannot be sure it is wrong).
pub const WARNING: &str = "Warning";
/// The object is in the published routing snapshot (routes and backends; written by the
/// snapshot publisher, next to the backend controller's own conditions).
pub const PUBLISHED: &str = "Published";
/// Every proxy of the fleet runs the snapshot this route was published in.
pub const SYNCED: &str = "Synced";

/// Condition reasons (CamelCase, as the API conventions ask).
pub mod reason {
    /// The spec breaks a rule the schema cannot express (a managed flag in `extraArgs`).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Pods exist but the model is still loading (or not all are ready).
    pub const LOADING: &str = "Loading";
    /// The objects were just applied and have not been observed yet.
    pub const PROGRESSING: &str = "Progressing";
    pub const AVAILABLE: &str = "Available";
    /// `nodes > 1` but the LeaderWorkerSet API is not installed in the cluster.
    pub const LEADER_WORKER_SET_MISSING: &str = "LeaderWorkerSetMissing";
    pub const UNKNOWN_PARSER: &str = "UnknownParser";
    /// A route refers to a backend that does not exist or was refused.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// Another, older route already claims one of this route's model names.
    pub const MODEL_CONFLICT: &str = "ModelConflict";
    /// The route is part of the published snapshot.
    pub const ACCEPTED: &str = "Accepted";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Another object of the same kind and name, in another namespace the operator serves, is
    /// older: snapshot names are unique across namespaces.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The Secret (or key) an external backend's `apiKeySecretRef` names cannot be read.
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    /// No route at all could be published; the proxies keep the snapshot they have.
    pub const SNAPSHOT_INVALID: &str = "SnapshotInvalid";
    /// Some proxies still run an older snapshot.
    pub const PROXIES_SYNCING: &str = "ProxiesSyncing";
    /// Every proxy runs the current snapshot.
    pub const PROXIES_SYNCED: &str = "ProxiesSynced";
    /// No proxy pod was found to publish to.
    pub const NO_PROXIES: &str = "NoProxies";
    /// An external backend: nothing to run, the endpoint is used as given.
    pub const EXTERNAL: &str = "External";
    /// A pod answered its warm-up requests (pod condition `switchyard.dev/warmed`).
    pub const WARMED_UP: &str = "WarmedUp";
    /// A pod's warm-up failed; it is retried with backoff and the pod takes no traffic.
    pub const WARMUP_FAILED: &str = "WarmupFailed";
    /// Warm-up was turned off after the pod was created with its readiness gate: the gate is
    /// opened without a request.
    pub const WARMUP_DISABLED: &str = "WarmupDisabled";
}

/// Set (or replace) the condition of type `type_`. The transition time moves only when the
/// status changes, as the API conventions require, so a steady object does not churn.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// Drop the condition of type `type_`, if present (kstatus reads an absent `Stalled` as
/// "not stalled").
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 9, 0).unwrap();
        let mut cs = Vec::new();
        set_condition(&mut cs, READY, false, reason::LOADING, "0/1", Some(1), t0);
        set_condition(
            &mut cs,
            READY,
            false,
            reason::LOADING,
            "still 0/1",
            Some(2),
            t1,
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, Time(t0));
        assert_eq!(cs[0].message, "still 0/1");
        assert_eq!(cs[0].observed_generation, Some(2));
        set_condition(&mut cs, READY, true, reason::AVAILABLE, "1/1", Some(2), t2);
        assert_eq!(cs[0].last_transition_time, Time(t2));
        assert!(is_true(&cs, READY));
        remove_condition(&mut cs, READY);
        assert!(!is_true(&cs, READY));
    }
}
