//! Endpoint choice within a backend, passive outlier ejection and the retry budget.
//!
//! Requests of one Claude Code session go to the same vLLM replica while it is healthy and not
//! overloaded, so its prefix cache is reused: rendezvous hashing of the session id ranks the
//! endpoints, and the first whose outstanding requests stay within a bounded load
//! (`LOAD_FACTOR` × the fair share) takes it. Without a session, least outstanding wins.
//! Time is passed in, so every rule here is tested without sleeping.
//!
//! Outliers: only failures that say an endpoint is broken (refused connections, timeouts,
//! 500/502/504, cut streams) count, once per request however many retries it made; an
//! overloaded answer (429/503/529) does not. Ejection never takes out the last available
//! endpoint of a backend, and when none is available the ejected ones are tried anyway
//! (Envoy's panic mode), so a blip never turns into seconds of "no healthy backend".

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_api::{OutlierPolicy, RetryBudget};

/// How far above the fair share a session's preferred endpoint may be loaded before the
/// session spills to the next one (consistent hashing with bounded loads).
const LOAD_FACTOR: f64 = 1.25;

/// One replica. Shared across config reloads for an unchanged URL, so load and ejection
/// state carry over.
#[derive(Debug)]
pub struct Endpoint {
    /// Base URL including `/v1`.
    pub url: String,
    url_hash: u64,
    outstanding: AtomicU32,
    health: Mutex<Health>,
    /// Set by the active health check; passive ejection is tracked in `health`.
    pub active_healthy: AtomicBool,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// The backend's last available endpoint failed enough to be ejected: it stays in (its
    /// backend's requests still need it) but the backend goes behind the route's healthy
    /// alternatives until then, as LiteLLM's deployment cooldown does.
    cooling_until: Option<Instant>,
    /// What the last counted failure was (shown by the admin API's health view).
    last_failure: Option<String>,
}

/// An endpoint's state as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStatus {
    pub url: String,
    /// `ok`, `ejected` (out until `until_ms`), `cooling` (the backend's last endpoint, kept
    /// in but behind the route's healthy alternatives) or `failing_health_check`.
    pub state: &'static str,
    /// Milliseconds until an ejection or cool-down ends.
    pub until_ms: Option<u64>,
    pub outstanding: u32,
    pub consecutive_failures: u32,
    pub ejections: u32,
    pub last_failure: Option<String>,
}

/// What one failure did to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; below the threshold.
    Counted,
    /// Taken out of its backend's rotation.
    Ejected,
    /// The backend's last available endpoint: kept, but its backend cools down.
    Cooling,
}

/// Counts a request against an endpoint while it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Endpoint {
    pub fn new(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.trim_end_matches('/').to_owned(),
            url_hash: fnv(url.as_bytes()),
            outstanding: AtomicU32::new(0),
            health: Mutex::new(Health::default()),
            active_healthy: AtomicBool::new(true),
        })
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn available(&self, now: Instant) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
            && self
                .health
                .lock()
                .expect("health lock")
                .ejected_until
                .is_none_or(|until| now >= until)
    }

    /// Available and not cooling down: a backend with such an endpoint is tried before
    /// the route's other backends whose endpoints are all out or cooling.
    pub fn preferred(&self, now: Instant) -> bool {
        self.available(now)
            && self
                .health
                .lock()
                .expect("health lock")
                .cooling_until
                .is_none_or(|until| now >= until)
    }

    pub fn status(&self, now: Instant) -> EndpointStatus {
        let h = self.health.lock().expect("health lock");
        let left = |t: Option<Instant>| {
            t.filter(|t| *t > now)
                .map(|t| t.duration_since(now).as_millis() as u64)
        };
        let (ejected, cooling) = (left(h.ejected_until), left(h.cooling_until));
        let state = if !self.active_healthy.load(Ordering::Relaxed) {
            "failing_health_check"
        } else if ejected.is_some() {
            "ejected"
        } else if cooling.is_some() {
            "cooling"
        } else {
            "ok"
        };
        EndpointStatus {
            url: self.url.clone(),
            state,
            until_ms: ejected.or(cooling),
            outstanding: self.outstanding(),
            consecutive_failures: h.consecutive_failures,
            ejections: h.ejections,
            last_failure: h.last_failure.clone(),
        }
    }

    pub fn record_success(&self) {
        let mut h = self.health.lock().expect("health lock");
        *h = Health::default();
    }

    /// Counts one request's failure on this endpoint. `others_available` is false when no
    /// other endpoint of the backend is available: then the endpoint stays in its backend
    /// (ejecting the last one would leave the backend's own requests nothing) and cools
    /// down instead, which sends the route's traffic to its other backends first.
    pub fn record_failure(
        &self,
        policy: &OutlierPolicy,
        now: Instant,
        others_available: bool,
        why: &str,
    ) -> Verdict {
        let mut h = self.health.lock().expect("health lock");
        h.last_failure = Some(why.chars().take(300).collect());
        h.consecutive_failures += 1;
        if h.consecutive_failures < policy.consecutive_failures.max(1) {
            return Verdict::Counted;
        }
        h.consecutive_failures = 0;
        let factor = 1u64 << h.ejections.min(16);
        let backoff = policy
            .base_ejection_ms
            .saturating_mul(factor)
            .min(policy.max_ejection_ms);
        h.ejections += 1;
        let until = Some(now + Duration::from_millis(backoff));
        if others_available {
            h.ejected_until = until;
            Verdict::Ejected
        } else {
            h.cooling_until = until;
            Verdict::Cooling
        }
    }
}

/// Whether any endpoint other than `except` is available.
pub fn others_available(endpoints: &[Arc<Endpoint>], except: usize, now: Instant) -> bool {
    endpoints
        .iter()
        .enumerate()
        .any(|(i, e)| i != except && e.available(now))
}

/// Picks an endpoint among those not yet tried for this request: available ones first; when
/// none is available, the ejected or unhealthy ones (panic mode: a guess beats a refusal).
pub fn pick(
    endpoints: &[Arc<Endpoint>],
    session: Option<u64>,
    tried: &[usize],
    now: Instant,
) -> Option<usize> {
    let untried = || (0..endpoints.len()).filter(|i| !tried.contains(i));
    let mut candidates: Vec<usize> = untried().filter(|i| endpoints[*i].available(now)).collect();
    if candidates.is_empty() && !endpoints.iter().any(|e| e.available(now)) {
        candidates = untried().collect();
    }
    if candidates.is_empty() {
        return None;
    }
    let Some(session) = session else {
        return candidates
            .into_iter()
            .min_by_key(|i| endpoints[*i].outstanding());
    };
    let total: u32 = candidates.iter().map(|i| endpoints[*i].outstanding()).sum();
    let bound = (LOAD_FACTOR * (total + 1) as f64 / candidates.len() as f64).ceil() as u32;
    let mut ranked = candidates;
    ranked.sort_by_key(|i| std::cmp::Reverse(mix(session ^ endpoints[*i].url_hash)));
    ranked
        .iter()
        .copied()
        .find(|i| endpoints[*i].outstanding() < bound)
        .or_else(|| ranked.first().copied())
}

/// A 64-bit hash of a session id (stable across processes: every proxy of a fleet agrees).
pub fn session_hash(session: &str) -> u64 {
    mix(fnv(session.as_bytes()))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 finaliser: spreads nearby inputs over the whole range.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Retries may add at most `ratio` × recent requests (floor `min_per_second` × window) to a
/// backend, counted over a sliding window of one-second buckets.
#[derive(Debug)]
pub struct RetryBudgetState {
    policy: RetryBudget,
    epoch: Instant,
    buckets: Mutex<[(u64, u64, u64); WINDOW_SECS]>,
    pub exhausted: AtomicU64,
}

const WINDOW_SECS: usize = 10;

impl RetryBudgetState {
    pub fn new(policy: RetryBudget, epoch: Instant) -> Self {
        Self {
            policy,
            epoch,
            buckets: Mutex::new([(u64::MAX, 0, 0); WINDOW_SECS]),
            exhausted: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the current second's bucket with the window's (requests, retries) totals.
    fn with_bucket<R>(
        &self,
        now: Instant,
        f: impl FnOnce(&mut (u64, u64, u64), u64, u64) -> R,
    ) -> R {
        let sec = now.saturating_duration_since(self.epoch).as_secs();
        let mut buckets = self.buckets.lock().expect("budget lock");
        let slot = (sec % WINDOW_SECS as u64) as usize;
        if buckets[slot].0 != sec {
            buckets[slot] = (sec, 0, 0);
        }
        let (requests, retries) = buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && sec.saturating_sub(b.0) < WINDOW_SECS as u64)
            .fold((0, 0), |(q, r), b| (q + b.1, r + b.2));
        f(&mut buckets[slot], requests, retries)
    }

    pub fn record_request(&self, now: Instant) {
        self.with_bucket(now, |slot, _, _| slot.1 += 1);
    }

    /// Takes one retry from the budget if there is room.
    pub fn try_retry(&self, now: Instant) -> bool {
        let allowed = self.with_bucket(now, |slot, requests, retries| {
            let cap = (self.policy.ratio * requests as f64) as u64
                + self.policy.min_per_second as u64 * WINDOW_SECS as u64;
            if retries < cap {
                slot.2 += 1;
                true
            } else {
                false
            }
        });
        if !allowed {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

/// Full-jitter exponential backoff for retry number `retry` (1-based).
pub fn backoff(base_ms: u64, max_ms: u64, retry: u32, random: u64) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1 << retry.saturating_sub(1).min(16))
        .min(max_ms);
    Duration::from_millis(if ceiling == 0 {
        0
    } else {
        random % (ceiling + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Endpoint::new(&format!("http://10.0.0.{i}:8000/v1")))
            .collect()
    }

    #[test]
    fn sessions_stick_and_spread() {
        let eps = endpoints(4);
        let now = Instant::now();
        let mut per_endpoint = [0u32; 4];
        for s in 0..400 {
            let h = session_hash(&format!("session-{s}"));
            let first = pick(&eps, Some(h), &[], now).unwrap();
            assert_eq!(
                pick(&eps, Some(h), &[], now),
                Some(first),
                "same session, same endpoint"
            );
            per_endpoint[first] += 1;
        }
        assert!(
            per_endpoint.iter().all(|&c| c > 60),
            "sessions spread: {per_endpoint:?}"
        );
    }

    #[test]
    fn overloaded_preferred_endpoint_spills_to_next() {
        let eps = endpoints(2);
        let now = Instant::now();
        let h = session_hash("s");
        let preferred = pick(&eps, Some(h), &[], now).unwrap();
        let _load: Vec<InFlight> = (0..10).map(|_| eps[preferred].start()).collect();
        assert_eq!(pick(&eps, Some(h), &[], now), Some(1 - preferred));
        drop(_load);
        assert_eq!(
            pick(&eps, Some(h), &[], now),
            Some(preferred),
            "returns once load drops"
        );
    }

    #[test]
    fn least_outstanding_without_session_and_tried_are_skipped() {
        let eps = endpoints(3);
        let now = Instant::now();
        let _a = eps[0].start();
        let _b = eps[1].start();
        assert_eq!(pick(&eps, None, &[], now), Some(2));
        assert_eq!(pick(&eps, None, &[2], now).map(|i| i < 2), Some(true));
        assert_eq!(pick(&eps, None, &[0, 1, 2], now), None);
    }

    #[test]
    fn consecutive_failures_eject_with_doubling_backoff() {
        let policy = OutlierPolicy {
            consecutive_failures: 2,
            base_ejection_ms: 1000,
            max_ejection_ms: 3000,
        };
        let ep = Endpoint::new("http://x/v1");
        let t0 = Instant::now();
        assert_eq!(
            ep.record_failure(&policy, t0, true, "refused"),
            Verdict::Counted
        );
        assert_eq!(
            ep.record_failure(&policy, t0, true, "refused"),
            Verdict::Ejected
        );
        assert!(!ep.available(t0 + Duration::from_millis(999)));
        assert!(ep.available(t0 + Duration::from_millis(1000)));
        let t1 = t0 + Duration::from_secs(2);
        ep.record_failure(&policy, t1, true, "refused");
        ep.record_failure(&policy, t1, true, "refused");
        assert!(
            !ep.available(t1 + Duration::from_millis(1999)),
            "second ejection doubles"
        );
        ep.record_success();
        assert!(ep.available(t1));
        let eps = vec![ep.clone(), Endpoint::new("http://y/v1")];
        ep.record_failure(&policy, t1, true, "refused");
        ep.record_failure(&policy, t1, true, "refused");
        assert_eq!(
            pick(&eps, Some(session_hash("any")), &[], t1),
            Some(1),
            "ejected endpoint skipped"
        );
    }

    #[test]
    fn status_says_whether_and_why_an_endpoint_is_out() {
        let policy = OutlierPolicy {
            consecutive_failures: 2,
            base_ejection_ms: 5000,
            max_ejection_ms: 5000,
        };
        let t0 = Instant::now();
        let eps = endpoints(2);
        eps[0].record_failure(&policy, t0, true, "connection refused");
        let s = eps[0].status(t0);
        assert_eq!((s.state, s.consecutive_failures, s.ejections), ("ok", 1, 0));
        assert_eq!(s.last_failure.as_deref(), Some("connection refused"));
        eps[0].record_failure(&policy, t0, true, "reset mid-stream");
        let s = eps[0].status(t0 + Duration::from_millis(1000));
        assert_eq!(
            (s.state, s.until_ms, s.ejections),
            ("ejected", Some(4000), 1)
        );
        assert_eq!(s.last_failure.as_deref(), Some("reset mid-stream"));
        assert_eq!(eps[0].status(t0 + Duration::from_millis(5000)).state, "ok");
        for _ in 0..2 {
            eps[1].record_failure(&policy, t0, false, "timeout");
        }
        assert_eq!(eps[1].status(t0).state, "cooling");
        eps[1].active_healthy.store(false, Ordering::Relaxed);
        assert_eq!(eps[1].status(t0).state, "failing_health_check");
        eps[1].active_healthy.store(true, Ordering::Relaxed);
        eps[1].record_success();
        let s = eps[1].status(t0);
        assert_eq!((s.state, s.last_failure), ("ok", None));
    }

    #[test]
    fn the_last_available_endpoint_is_never_ejected() {
        let policy = OutlierPolicy {
            consecutive_failures: 1,
            base_ejection_ms: 5000,
            max_ejection_ms: 5000,
        };
        let t0 = Instant::now();
        let eps = endpoints(2);
        assert_eq!(
            eps[0].record_failure(&policy, t0, others_available(&eps, 0, t0), "refused"),
            Verdict::Ejected
        );
        assert!(!others_available(&eps, 1, t0));
        assert_eq!(
            eps[1].record_failure(&policy, t0, others_available(&eps, 1, t0), "refused"),
            Verdict::Cooling,
            "the only endpoint left stays in"
        );
        assert!(eps[1].available(t0));
        assert!(
            !eps[1].preferred(t0),
            "its backend goes behind healthy ones"
        );
        assert!(eps[1].preferred(t0 + Duration::from_millis(5000)));
        eps[1].record_success();
        assert!(eps[1].preferred(t0), "a success ends the cooldown");
        assert_eq!(pick(&eps, None, &[], t0), Some(1));
        assert_eq!(
            pick(&eps, None, &[1], t0),
            None,
            "ejected one skipped while another is available"
        );
    }

    #[test]
    fn with_every_endpoint_out_the_ejected_are_tried_anyway() {
        let t0 = Instant::now();
        let eps = endpoints(2);
        eps[0].active_healthy.store(false, Ordering::Relaxed);
        eps[1].active_healthy.store(false, Ordering::Relaxed);
        let first = pick(&eps, Some(session_hash("s")), &[], t0).expect("panic mode picks one");
        assert_eq!(
            pick(&eps, Some(session_hash("s")), &[first], t0),
            Some(1 - first)
        );
        assert_eq!(pick(&eps, None, &[0, 1], t0), None);
    }

    #[test]
    fn retry_budget_caps_a_storm() {
        let t0 = Instant::now();
        let budget = RetryBudgetState::new(
            RetryBudget {
                ratio: 0.1,
                min_per_second: 1,
            },
            t0,
        );
        for _ in 0..100 {
            budget.record_request(t0);
        }
        // 10% of 100 plus a floor of 1/s over the 10 s window = 20 retries.
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 20);
        assert_eq!(budget.exhausted.load(Ordering::Relaxed), 80);
        // After the window slides past, the budget is back to its floor.
        let later = t0 + Duration::from_secs(11);
        assert_eq!((0..100).filter(|_| budget.try_retry(later)).count(), 10);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        assert_eq!(backoff(100, 2000, 1, 0), Duration::ZERO);
        assert_eq!(backoff(100, 2000, 1, 100), Duration::from_millis(100));
        assert_eq!(backoff(100, 2000, 3, 400), Duration::from_millis(400));
        assert!(backoff(100, 2000, 10, u64::MAX) <= Duration::from_millis(2000));
    }
}
