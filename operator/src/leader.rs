//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas can run and only one
//! reconciles. Writes use `replace` with the Lease's `resourceVersion`: of two replicas racing
//! for an expired Lease, the API server lets exactly one through (the other gets 409).
//!
//! Expiry is judged from the Lease's `renewTime` against this replica's clock, so the clocks of
//! the nodes must agree to well within the lease duration (NTP does that).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::PostParams;
use kube::Api;
use std::time::Duration;
use tokio::sync::watch;

/// Name of the Lease every replica competes for.
pub const LEASE_NAME: &str = "switchyard-operator";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds a live lease: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// What to do about `lease` (as read now) for the replica `me`. `duration` applies when the
/// Lease does not say its own.
pub fn decide(lease: Option<&Lease>, me: &str, now: DateTime<Utc>, duration: Duration) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(duration, Duration::from_secs);
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let live = renewed.is_some_and(|t| {
        k8s_openapi::chrono::Duration::from_std(duration).is_ok_and(|d| t + d > now)
    });
    if live {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    } else {
        Decision::Acquire
    }
}

/// One replica's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, identity: impl Into<String>, duration: Duration) -> Self {
        Self {
            api,
            identity: identity.into(),
            duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round of the election: whether this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(LEASE_NAME).await?;
        let now = Utc::now();
        let decision = decide(current.as_ref(), &self.identity, now, self.duration);
        let lease = match (decision, current) {
            (Decision::Follow { .. }, _) => return Ok(false),
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
                lease
            }
            (_, current) => {
                let transitions = current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                let had_holder = current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.holder_identity.as_deref())
                    .is_some_and(|h| !h.is_empty());
                let mut lease = current.unwrap_or_else(|| Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.into()),
                        ..Default::default()
                    },
                    spec: None,
                });
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_duration_seconds: Some(self.duration.as_secs() as i32),
                    lease_transitions: Some(transitions + i32::from(had_holder)),
                    ..Default::default()
                });
                lease
            }
        };
        let written = if lease.metadata.resource_version.is_some() {
            self.api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Ok(true),
            // Another replica wrote first.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) so the other replica takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
            .map(drop)
    }
}

/// Keeps competing for the Lease every `duration / 3`, publishing whether this replica leads.
/// Leadership is given up when a renewal has not succeeded for a whole `duration` (the other
/// replica may hold it by then). Returns when `stop` turns true.
pub async fn run(lock: LeaseLock, leader: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let period = lock.duration / 3;
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(true) => {
                last_renewal = Some(tokio::time::Instant::now());
                if !*leader.borrow() {
                    tracing::info!(identity = lock.identity(), "became leader");
                }
                leader.send_replace(true);
            }
            Ok(false) => {
                last_renewal = None;
                if leader.send_replace(false) {
                    tracing::warn!(identity = lock.identity(), "lost leadership");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_renewal.is_some_and(|t| t.elapsed() >= lock.duration) {
                    last_renewal = None;
                    leader.send_replace(false);
                    tracing::warn!(identity = lock.identity(), "lease expired: stepping down");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn lease(holder: Option<&str>, renewed_at_sec: u32, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(at(renewed_at_sec))),
                lease_duration_seconds: duration,
                ..Default::default()
            }),
        }
    }

    fn at(sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, sec).unwrap()
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn no_lease_or_no_holder_is_free() {
        assert_eq!(decide(None, "me", at(0), D), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease(None, 0, Some(15))), "me", at(1), D),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), 0, Some(15))), "me", at(1), D),
            Decision::Acquire
        );
    }

    #[test]
    fn own_lease_is_renewed_even_when_late() {
        assert_eq!(
            decide(Some(&lease(Some("me"), 0, Some(15))), "me", at(59), D),
            Decision::Renew
        );
    }

    #[test]
    fn another_live_holder_is_followed_until_expiry() {
        let l = lease(Some("other"), 10, Some(15));
        assert_eq!(
            decide(Some(&l), "me", at(24), D),
            Decision::Follow {
                holder: "other".into()
            }
        );
        assert_eq!(decide(Some(&l), "me", at(25), D), Decision::Acquire);
        // The Lease's own duration wins over ours.
        let long = lease(Some("other"), 10, Some(40));
        assert!(matches!(
            decide(Some(&long), "me", at(49), D),
            Decision::Follow { .. }
        ));
        // Without one, ours applies.
        let unsaid = lease(Some("other"), 10, None);
        assert_eq!(decide(Some(&unsaid), "me", at(26), D), Decision::Acquire);
    }
}
