//! Client authentication and per-key limits.
//!
//! Keys are configured only as the hex SHA-256 of the key ([`ClientKey::sha256`]). A request
//! presents its key in `x-api-key` (preferred) or `Authorization: Bearer …`; the proxy hashes it
//! and compares the digest with every configured digest in constant time. The raw key is never
//! stored, logged, or shown by any `Debug` implementation here.
//!
//! Each [`KeyEntry`] owns its limit state behind `Arc`s, so the state lives as long as the entry:
//! [`KeyTable::reload`] carries entries whose configuration is unchanged over to the new table.
//!
//! Limits ([`Limits`]):
//! - `requestsPerMinute`: GCRA (the `governor` crate) with a burst of the whole minute's quota,
//!   replenishing one request every `60 s / limit`.
//! - `concurrent`: a semaphore; [`KeyEntry::acquire`] never waits.
//! - `tokensPerMinute`: a token bucket, see [`KeyEntry::charge_tokens`].
//!
//! A limit of `0` is honoured literally: the key is refused for good (fail closed, with
//! `x-should-retry: false`), as is a request larger than the whole tokens-per-minute capacity
//! ([`KeyEntry::check_size`]). Time comes from a
//! [`Clock`], so tests drive it with [`ManualClock`] and never sleep.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use governor::clock::Clock as GovernorClockTrait;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use switchyard_api::{ClientKey, Limits};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorKind};

/// Identity name used when no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

/// Retry-after, in seconds, suggested when the concurrency limit is reached (there is no
/// better estimate).
const DEFAULT_RETRY_SECS: u64 = 1;

/// Hex SHA-256 of `key`, the form [`ClientKey::sha256`] expects
/// (same as `printf %s "$KEY" | sha256sum`).
pub fn hash_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = digest_of(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

fn digest_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Decodes 64 hex digits (either case, surrounding whitespace ignored).
fn decode_hex_digest(hex: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Whole seconds to wait, rounded up, at least 1 (the `retry-after` value).
fn retry_secs(wait: Duration) -> u64 {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    secs.max(1)
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// A monotonic time source for the limiters.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since a fixed, arbitrary origin; never decreases.
    fn now(&self) -> Duration;
}

/// The real clock: [`Instant`] relative to a process-wide origin, so entries built by different
/// tables agree.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to (tests). Clones share the same time.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_add wraps; saturate instead.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// Adapts our [`Clock`] to governor's clock trait (`Duration` is a governor `Reference`).
#[derive(Debug, Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl GovernorClockTrait for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}

type RequestLimiter = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a request was not authenticated or authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    /// `key` is the key's configured name, never the key itself.
    #[error("API key `{key}` is not allowed to use route `{route}`")]
    RouteNotAllowed { key: String, route: String },
}

impl AuthError {
    /// Missing/Invalid: `authentication_error` (401); RouteNotAllowed: `permission_error` (403).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Missing | AuthError::Invalid => ErrorKind::Authentication,
            AuthError::RouteNotAllowed { .. } => ErrorKind::Permission,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

/// A per-key (or per-route) limit refused the request: `rate_limit_error` (429).
///
/// Waiting helps with [`LimitError::RateLimited`] and [`LimitError::TooManyConcurrent`]
/// (`retry-after`); the other two are hard quotas no retry can pass, so they carry
/// `x-should-retry: false` and Claude Code fails at once instead of retrying ten times.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Requests or tokens per minute exhausted; retry after this many seconds (≥ 1).
    #[error("rate limit exceeded for this API key, retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many concurrent requests for this API key")]
    TooManyConcurrent,
    /// A limit configured as 0 refuses every request (`who` is the key's or route's name).
    #[error("`{who}` has {limit} set to 0: every request is refused")]
    Closed { who: String, limit: &'static str },
    /// One request's estimated input alone exceeds the tokens-per-minute capacity.
    #[error("this request's estimated {estimated} input tokens exceed the tokensPerMinute limit of {limit} for `{who}`; it can never be admitted")]
    TooLarge {
        who: String,
        estimated: u64,
        limit: u64,
    },
}

impl LimitError {
    /// Always `rate_limit_error` (429).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::RateLimit
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The `retry-after` header value in seconds; `None` when no wait helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            LimitError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            LimitError::TooManyConcurrent => Some(DEFAULT_RETRY_SECS),
            LimitError::Closed { .. } | LimitError::TooLarge { .. } => None,
        }
    }

    /// A refusal that retrying cannot change.
    pub fn is_final(&self) -> bool {
        self.retry_after_secs().is_none()
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError {
            kind: e.kind(),
            message: e.to_string(),
            retry_after: e.retry_after_secs(),
            final_answer: e.is_final(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limit state
// ---------------------------------------------------------------------------------------------

/// Scale of [`TokenBucket`] levels: one token is `NANOS_PER_MINUTE` units, so refilling at
/// `limit` tokens per minute adds exactly `limit` units per elapsed nanosecond.
const NANOS_PER_MINUTE: i128 = 60_000_000_000;

/// Tokens-per-minute bucket: capacity `limit`, refilled continuously at `limit / 60` tokens per
/// second, starting full. Charging may drive it negative; requests are refused while the level is
/// ≤ 0. Long-run throughput is at most `limit` tokens per minute; a burst of up to one minute's
/// worth (plus the overshoot of the requests in flight when it ran out) is allowed.
#[derive(Debug)]
struct TokenBucket {
    limit: u64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Tokens × [`NANOS_PER_MINUTE`].
    level: i128,
    last: Duration,
}

impl TokenBucket {
    fn new(limit: u64, now: Duration) -> Self {
        Self {
            limit,
            state: Mutex::new(BucketState {
                level: Self::capacity(limit),
                last: now,
            }),
        }
    }

    fn capacity(limit: u64) -> i128 {
        i128::from(limit).saturating_mul(NANOS_PER_MINUTE)
    }

    /// Locks and refills up to `now`.
    fn refilled(&self, now: Duration) -> std::sync::MutexGuard<'_, BucketState> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now > st.last {
            let elapsed = i128::try_from((now - st.last).as_nanos()).unwrap_or(i128::MAX);
            st.level = st
                .level
                .saturating_add(elapsed.saturating_mul(i128::from(self.limit)))
                .min(Self::capacity(self.limit));
            st.last = now;
        }
        st
    }

    /// `Ok` while the level is positive, else the time until it will be.
    fn check(&self, now: Duration) -> Result<(), Duration> {
        let st = self.refilled(now);
        if st.level > 0 {
            return Ok(());
        }
        if self.limit == 0 {
            // Never positive again; `KeyEntry::closed` reports it before this is reached.
            return Err(Duration::MAX);
        }
        // Smallest whole nanosecond count after which level + ns × limit > 0.
        let ns = (-st.level) / i128::from(self.limit) + 1;
        Err(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }

    fn charge(&self, tokens: u64, now: Duration) {
        let mut st = self.refilled(now);
        st.level = st
            .level
            .saturating_sub(i128::from(tokens).saturating_mul(NANOS_PER_MINUTE));
    }

    /// Whole tokens currently available (may be negative); for tests and diagnostics.
    fn available(&self, now: Duration) -> i128 {
        self.refilled(now).level.div_euclid(NANOS_PER_MINUTE)
    }
}

/// Per-entry limiter state; `Arc`s so it can be shared by clones of the state.
#[derive(Clone)]
struct LimitState {
    clock: Arc<dyn Clock>,
    /// `None`: unlimited. `Some(None)`: a limit of 0 (always refused).
    requests: Option<Option<Arc<RequestLimiter>>>,
    concurrency: Option<Arc<Semaphore>>,
    tokens: Option<Arc<TokenBucket>>,
}

impl LimitState {
    fn new(limits: &Limits, clock: Arc<dyn Clock>) -> Self {
        let requests = limits.requests_per_minute.map(|rpm| {
            std::num::NonZeroU32::new(rpm).map(|rpm| {
                Arc::new(RateLimiter::direct_with_clock(
                    Quota::per_minute(rpm),
                    GovernorClock(clock.clone()),
                ))
            })
        });
        let concurrency = limits.concurrent.map(|n| {
            let n = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS);
            Arc::new(Semaphore::new(n))
        });
        let tokens = limits
            .tokens_per_minute
            .map(|tpm| Arc::new(TokenBucket::new(tpm, clock.now())));
        Self {
            clock,
            requests,
            concurrency,
            tokens,
        }
    }
}

/// Held for the duration of a request; releases its concurrency slot on drop.
#[derive(Debug)]
#[must_use = "the concurrency slot is released as soon as the permit is dropped"]
pub struct ConcurrencyPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

// ---------------------------------------------------------------------------------------------
// Entries and table
// ---------------------------------------------------------------------------------------------

/// One configured client key (or the anonymous identity of an open table) with its limit state.
pub struct KeyEntry {
    config: ClientKey,
    /// Decoded [`ClientKey::sha256`]; all zero when `valid` is false.
    digest: [u8; 32],
    /// False when the configured hex was malformed: the entry then never matches.
    valid: Choice,
    limits: LimitState,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the key (never stored) nor its digest is shown.
        f.debug_struct("KeyEntry")
            .field("name", &self.config.name)
            .field("routes", &self.config.routes)
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl KeyEntry {
    fn new(config: &ClientKey, clock: Arc<dyn Clock>) -> Self {
        let decoded = decode_hex_digest(&config.sha256);
        if decoded.is_none() {
            tracing::warn!(key = %config.name, "client key sha256 is not 64 hex digits; the key will never match");
        }
        Self {
            config: config.clone(),
            digest: decoded.unwrap_or([0; 32]),
            valid: Choice::from(u8::from(decoded.is_some())),
            limits: LimitState::new(&config.limits, clock),
        }
    }

    /// Limits shared by all traffic of one route; it never matches a client key.
    pub fn route_limiter(route: &str, limits: &Limits) -> Self {
        let config = ClientKey {
            name: format!("route:{route}"),
            sha256: String::new(),
            routes: Vec::new(),
            limits: limits.clone(),
            log_content: false,
        };
        Self {
            digest: [0; 32],
            valid: Choice::from(0),
            limits: LimitState::new(&config.limits, Arc::new(MonotonicClock)),
            config,
        }
    }

    fn anonymous(clock: Arc<dyn Clock>) -> Self {
        let config = ClientKey {
            name: ANONYMOUS.to_owned(),
            sha256: String::new(),
            routes: Vec::new(),
            limits: Limits::default(),
            log_content: false,
        };
        Self {
            digest: [0; 32],
            valid: Choice::from(0),
            limits: LimitState::new(&config.limits, clock),
            config,
        }
    }

    /// The key's configured name (for logs and metrics).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The key's requests have their content captured (`logContent` on the key).
    pub fn log_content(&self) -> bool {
        self.config.log_content
    }

    /// Routes this key may use; empty means all.
    pub fn routes(&self) -> &[String] {
        &self.config.routes
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Whether the key may use `route` (an empty route list allows all).
    pub fn allows_route(&self, route: &str) -> bool {
        self.config.routes.is_empty() || self.config.routes.iter().any(|r| r == route)
    }

    /// [`Self::allows_route`] as a `Result`: [`AuthError::RouteNotAllowed`] (403) when refused.
    pub fn authorize_route(&self, route: &str) -> Result<(), AuthError> {
        if self.allows_route(route) {
            Ok(())
        } else {
            Err(AuthError::RouteNotAllowed {
                key: self.config.name.clone(),
                route: route.to_owned(),
            })
        }
    }

    /// The first limit configured as 0, which refuses every request ([`LimitError::Closed`]).
    fn closed(&self) -> Result<(), LimitError> {
        let l = &self.config.limits;
        let zero = [
            ("requestsPerMinute", l.requests_per_minute.map(u64::from)),
            ("tokensPerMinute", l.tokens_per_minute),
            ("concurrent", l.concurrent.map(u64::from)),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(0));
        match zero {
            Some((limit, _)) => Err(LimitError::Closed {
                who: self.config.name.clone(),
                limit,
            }),
            None => Ok(()),
        }
    }

    /// Admission check before a request starts: refused while the tokens-per-minute bucket is
    /// empty (checked first, it consumes nothing), then takes one request from the
    /// requests-per-minute quota. A zero limit refuses for good ([`LimitError::Closed`]).
    pub fn check_request(&self) -> Result<(), LimitError> {
        self.closed()?;
        let now = self.limits.clock.now();
        if let Some(bucket) = &self.limits.tokens {
            bucket.check(now).map_err(|wait| LimitError::RateLimited {
                retry_after_secs: retry_secs(wait),
            })?;
        }
        self.take_request(now)
    }

    /// One request from the requests-per-minute quota.
    fn take_request(&self, now: Duration) -> Result<(), LimitError> {
        match &self.limits.requests {
            None | Some(None) => Ok(()),
            Some(Some(limiter)) => limiter
                .check()
                .map_err(|not_until| LimitError::RateLimited {
                    retry_after_secs: retry_secs(not_until.wait_time_from(now)),
                }),
        }
    }

    /// Admission of a `count_tokens` call: a closed key refuses it, and it takes one request
    /// from the requests-per-minute quota (it costs the backend a tokenizer pass, so a key
    /// cannot count without limit). It is not held to the tokens-per-minute bucket (it
    /// generates nothing and is never charged; refusing counts while the bucket refills would
    /// blind the client's context display exactly when it is busiest) and takes no
    /// concurrency slot (it is short, bounded by the count timeout, and slots are for
    /// generations).
    pub fn admit_count(&self) -> Result<(), LimitError> {
        self.closed()?;
        self.take_request(self.limits.clock.now())
    }

    /// Once the body is parsed: a request whose estimated input alone exceeds the whole
    /// tokens-per-minute capacity would be refused forever, so it is refused for good now
    /// ([`LimitError::TooLarge`]) rather than admitted to overdraw the bucket for minutes.
    pub fn check_size(&self, estimated_input: u64) -> Result<(), LimitError> {
        match self.config.limits.tokens_per_minute {
            Some(limit) if estimated_input > limit => Err(LimitError::TooLarge {
                who: self.config.name.clone(),
                estimated: estimated_input,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Takes a concurrency slot without waiting ([`LimitError::TooManyConcurrent`] when none is
    /// free). Always succeeds for keys without a concurrency limit.
    pub fn acquire(&self) -> Result<ConcurrencyPermit, LimitError> {
        match &self.limits.concurrency {
            None => Ok(ConcurrencyPermit { _permit: None }),
            Some(sem) => sem
                .clone()
                .try_acquire_owned()
                .map(|p| ConcurrencyPermit { _permit: Some(p) })
                .map_err(|_| LimitError::TooManyConcurrent),
        }
    }

    /// Every admission check in an order that wastes nothing: zero limits, a concurrency slot
    /// (given back if a later check fails), then [`Self::check_request`] (the token bucket,
    /// which consumes nothing, then the requests-per-minute quota). Hold the permit until the
    /// response has been sent.
    pub fn admit(&self) -> Result<ConcurrencyPermit, LimitError> {
        self.closed()?;
        let permit = self.acquire()?;
        self.check_request()?;
        Ok(permit)
    }

    /// Charges `n` tokens (input plus output) once a request has completed. See the token bucket
    /// scheme in the module docs: the bucket holds up to `tokensPerMinute`, refills continuously
    /// at `tokensPerMinute / 60` per second, may go negative, and [`Self::check_request`] refuses
    /// while it is ≤ 0 with `retry_after` = time until it is positive again. No-op without a
    /// tokens-per-minute limit.
    pub fn charge_tokens(&self, n: u64) {
        if let Some(bucket) = &self.limits.tokens {
            bucket.charge(n, self.limits.clock.now());
        }
    }

    /// Whole tokens left in the tokens-per-minute bucket now (negative when overdrawn);
    /// `None` without that limit.
    pub fn tokens_available(&self) -> Option<i128> {
        let now = self.limits.clock.now();
        self.limits.tokens.as_ref().map(|b| b.available(now))
    }

    /// Free concurrency slots; `None` without a concurrency limit.
    pub fn concurrency_available(&self) -> Option<usize> {
        self.limits
            .concurrency
            .as_ref()
            .map(|s| s.available_permits())
    }
}

/// The configured client keys. Open (no keys configured): every request is allowed as
/// [`ANONYMOUS`].
pub struct KeyTable {
    entries: Vec<Arc<KeyEntry>>,
    anonymous: Arc<KeyEntry>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTable")
            .field("open", &self.is_open())
            .field("entries", &self.entries)
            .finish()
    }
}

impl Default for KeyTable {
    /// An open table.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl KeyTable {
    /// Builds the table on the real monotonic clock.
    pub fn new(keys: &[ClientKey]) -> KeyTable {
        Self::with_clock(keys, Arc::new(MonotonicClock))
    }

    /// Builds the table on `clock` (tests pass a [`ManualClock`]).
    pub fn with_clock(keys: &[ClientKey], clock: Arc<dyn Clock>) -> KeyTable {
        KeyTable {
            entries: keys
                .iter()
                .map(|k| Arc::new(KeyEntry::new(k, clock.clone())))
                .collect(),
            anonymous: Arc::new(KeyEntry::anonymous(clock.clone())),
            clock,
        }
    }

    /// A table for a new configuration that keeps the entry (and so its limit state, in-flight
    /// permits included) of every key whose configuration is unchanged; changed or new keys
    /// start fresh. The anonymous entry and the clock are kept too.
    pub fn reload(&self, keys: &[ClientKey]) -> KeyTable {
        KeyTable {
            entries: keys
                .iter()
                .map(|k| {
                    self.entries
                        .iter()
                        .find(|e| e.config == *k)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(KeyEntry::new(k, self.clock.clone())))
                })
                .collect(),
            anonymous: self.anonymous.clone(),
            clock: self.clock.clone(),
        }
    }

    /// No keys configured: no key is required.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Arc<KeyEntry>] {
        &self.entries
    }

    /// The entry with this configured name.
    pub fn get(&self, name: &str) -> Option<&Arc<KeyEntry>> {
        self.entries.iter().find(|e| e.config.name == name)
    }

    /// Identifies the caller from `x-api-key`, or else `Authorization: Bearer …`. An open table
    /// accepts anything (or nothing) as [`ANONYMOUS`].
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyEntry>, AuthError> {
        if self.is_open() {
            return Ok(self.anonymous.clone());
        }
        let key = presented_key(headers)?;
        let digest = digest_of(key);
        let hit = ct_lookup(self.entries.iter().map(|e| (&e.digest, e.valid)), &digest);
        hit.map(|i| self.entries[i].clone())
            .ok_or(AuthError::Invalid)
    }
}

/// The raw key bytes from the headers (borrowed; never copied or logged).
fn presented_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    if let Some(v) = headers.get("x-api-key") {
        let key = v.as_bytes().trim_ascii();
        return if key.is_empty() {
            Err(AuthError::Missing)
        } else {
            Ok(key)
        };
    }
    let Some(auth) = headers.get(AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let auth = auth.as_bytes().trim_ascii();
    let Some(scheme) = auth.get(..7) else {
        return Err(AuthError::Missing);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return Err(AuthError::Missing);
    }
    let key = auth[7..].trim_ascii();
    if key.is_empty() {
        Err(AuthError::Missing)
    } else {
        Ok(key)
    }
}

/// Index of the first candidate whose digest equals `digest`, comparing against every candidate
/// in constant time (no early exit; the match position is selected without branching). Invalid
/// candidates (`Choice` 0) never match.
fn ct_lookup<'a>(
    candidates: impl Iterator<Item = (&'a [u8; 32], Choice)>,
    digest: &[u8; 32],
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, (candidate, valid)) in candidates.enumerate() {
        let hit = candidate.ct_eq(digest) & valid;
        index.conditional_assign(&(i as u64), hit & !found);
        found |= hit;
    }
    bool::from(found).then_some(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const KEY_A: &str = "sk-alpha-0123456789";
    const KEY_B: &str = "sk-bravo-9876543210";

    fn key(name: &str, raw: &str) -> ClientKey {
        ClientKey {
            name: name.to_owned(),
            sha256: hash_key(raw),
            routes: Vec::new(),
            limits: Limits::default(),
            log_content: false,
        }
    }

    fn with_limits(mut k: ClientKey, limits: Limits) -> ClientKey {
        k.limits = limits;
        k
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn table(keys: &[ClientKey]) -> (KeyTable, ManualClock) {
        let clock = ManualClock::new();
        (KeyTable::with_clock(keys, Arc::new(clock.clone())), clock)
    }

    fn single(limits: Limits) -> (Arc<KeyEntry>, ManualClock) {
        let (t, clock) = table(&[with_limits(key("a", KEY_A), limits)]);
        (t.entries()[0].clone(), clock)
    }

    #[test]
    fn hash_key_matches_sha256sum() {
        // printf %s abc | sha256sum
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            decode_hex_digest(&hash_key("abc").to_uppercase()),
            Some(digest_of(b"abc"))
        );
        assert_eq!(decode_hex_digest("abc"), None);
        assert_eq!(decode_hex_digest(&"zz".repeat(32)), None);
    }

    #[test]
    fn missing_key() {
        let (t, _) = table(&[key("a", KEY_A)]);
        assert!(!t.is_open());
        for h in [
            headers(&[]),
            headers(&[("x-api-key", "")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", KEY_A)]),
        ] {
            assert_eq!(t.authenticate(&h).unwrap_err(), AuthError::Missing, "{h:?}");
        }
    }

    #[test]
    fn invalid_key() {
        let (t, _) = table(&[key("a", KEY_A), key("b", KEY_B)]);
        for h in [
            headers(&[("x-api-key", "sk-wrong")]),
            headers(&[("authorization", "Bearer sk-wrong")]),
            // The hash itself is not a key.
            headers(&[("x-api-key", &hash_key(KEY_A))]),
            // x-api-key wins over Authorization.
            headers(&[
                ("x-api-key", "sk-wrong"),
                ("authorization", &format!("Bearer {KEY_A}")),
            ]),
        ] {
            assert_eq!(t.authenticate(&h).unwrap_err(), AuthError::Invalid, "{h:?}");
        }
    }

    #[test]
    fn valid_key_via_both_headers() {
        let (t, _) = table(&[key("a", KEY_A), key("b", KEY_B)]);
        let a = t.authenticate(&headers(&[("x-api-key", KEY_A)])).unwrap();
        assert_eq!(a.name(), "a");
        let b = t
            .authenticate(&headers(&[("authorization", &format!("Bearer {KEY_B}"))]))
            .unwrap();
        assert_eq!(b.name(), "b");
        let b2 = t
            .authenticate(&headers(&[(
                "authorization",
                &format!("bearer   {KEY_B} "),
            )]))
            .unwrap();
        assert!(Arc::ptr_eq(&b, &b2), "same entry, shared state");
        let a2 = t
            .authenticate(&headers(&[
                ("x-api-key", KEY_A),
                ("authorization", &format!("Bearer {KEY_B}")),
            ]))
            .unwrap();
        assert_eq!(a2.name(), "a");
    }

    #[test]
    fn uppercase_configured_hash_matches() {
        let mut k = key("a", KEY_A);
        k.sha256 = k.sha256.to_uppercase();
        let (t, _) = table(&[k]);
        assert_eq!(
            t.authenticate(&headers(&[("x-api-key", KEY_A)]))
                .unwrap()
                .name(),
            "a"
        );
    }

    #[test]
    fn malformed_configured_hash_never_matches_and_table_stays_closed() {
        let mut k = key("bad", KEY_A);
        k.sha256 = "not-hex".to_owned();
        let (t, _) = table(&[k]);
        assert!(!t.is_open());
        assert_eq!(
            t.authenticate(&headers(&[("x-api-key", KEY_A)]))
                .unwrap_err(),
            AuthError::Invalid
        );
        // An all-zero digest stands in for the bad hex; it still must not match.
        let zero = [0u8; 32];
        assert_eq!(
            ct_lookup([(&zero, Choice::from(0))].into_iter(), &zero),
            None
        );
    }

    #[test]
    fn constant_time_lookup_visits_every_entry() {
        let digests: Vec<[u8; 32]> = (0..5u8).map(|i| digest_of(&[i])).collect();
        for target in 0..digests.len() {
            let mut visited = 0;
            let got = ct_lookup(
                digests
                    .iter()
                    .map(|d| (d, Choice::from(1)))
                    .inspect(|_| visited += 1),
                &digests[target],
            );
            assert_eq!(got, Some(target));
            assert_eq!(
                visited,
                digests.len(),
                "no early exit on a match at {target}"
            );
        }
        let mut visited = 0;
        let miss = ct_lookup(
            digests
                .iter()
                .map(|d| (d, Choice::from(1)))
                .inspect(|_| visited += 1),
            &digest_of(b"other"),
        );
        assert_eq!((miss, visited), (None, digests.len()));
        // Duplicate digests: the first wins.
        let dup = [digests[1], digests[0], digests[1]];
        assert_eq!(
            ct_lookup(dup.iter().map(|d| (d, Choice::from(1))), &digests[1]),
            Some(0)
        );
        // An invalid candidate is skipped even if its bytes match.
        assert_eq!(
            ct_lookup(
                [
                    (&digests[2], Choice::from(0)),
                    (&digests[2], Choice::from(1))
                ]
                .into_iter(),
                &digests[2]
            ),
            Some(1)
        );
    }

    #[test]
    fn open_table_allows_everything_as_anonymous() {
        let (t, _) = table(&[]);
        assert!(t.is_open());
        assert!(KeyTable::default().is_open());
        for h in [
            headers(&[]),
            headers(&[("x-api-key", "anything")]),
            headers(&[("authorization", "Bearer whatever")]),
        ] {
            let e = t.authenticate(&h).unwrap();
            assert_eq!(e.name(), ANONYMOUS);
            assert!(e.allows_route("any-route"));
            assert!(e.authorize_route("any-route").is_ok());
            for _ in 0..1000 {
                e.check_request().unwrap();
            }
            let _permits: Vec<_> = (0..1000).map(|_| e.acquire().unwrap()).collect();
            e.charge_tokens(u64::MAX);
            e.check_request().unwrap();
            assert_eq!(e.tokens_available(), None);
            assert_eq!(e.concurrency_available(), None);
        }
    }

    #[test]
    fn route_permission() {
        let mut k = key("a", KEY_A);
        k.routes = vec!["sonnet".into(), "haiku".into()];
        let (t, _) = table(&[k, key("b", KEY_B)]);
        let a = t.get("a").unwrap();
        assert!(a.allows_route("sonnet"));
        assert!(a.allows_route("haiku"));
        assert!(!a.allows_route("opus"));
        assert!(a.authorize_route("haiku").is_ok());
        let err = a.authorize_route("opus").unwrap_err();
        assert_eq!(
            err,
            AuthError::RouteNotAllowed {
                key: "a".into(),
                route: "opus".into()
            }
        );
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let api: ApiError = err.into();
        assert_eq!(api.kind, ErrorKind::Permission);
        assert_eq!(
            api.message,
            "API key `a` is not allowed to use route `opus`"
        );
        assert_eq!(api.retry_after, None);
        // Empty list: everything.
        assert!(t.get("b").unwrap().allows_route("opus"));
    }

    #[test]
    fn auth_errors_map_to_401() {
        for (e, msg) in [
            (AuthError::Missing, "missing API key"),
            (AuthError::Invalid, "invalid API key"),
        ] {
            assert_eq!(e.kind(), ErrorKind::Authentication);
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
            let api: ApiError = e.into();
            assert_eq!(
                api,
                ApiError {
                    kind: ErrorKind::Authentication,
                    message: msg.into(),
                    retry_after: None,
                    final_answer: false
                }
            );
            assert_eq!(api.body()["error"]["type"], "authentication_error");
        }
    }

    #[test]
    fn limit_errors_map_to_429_with_retry_after() {
        let e = LimitError::RateLimited {
            retry_after_secs: 7,
        };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        let api: ApiError = e.into();
        assert_eq!(api.kind, ErrorKind::RateLimit);
        assert_eq!(api.retry_after, Some(7));
        assert!(!api.final_answer);
        assert_eq!(api.body()["error"]["type"], "rate_limit_error");

        let e = LimitError::TooManyConcurrent;
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        let api: ApiError = e.into();
        assert_eq!(api.kind, ErrorKind::RateLimit);
        assert_eq!(api.retry_after, Some(1));
    }

    #[test]
    fn retry_secs_rounds_up_to_at_least_one() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_secs(Duration::from_secs(20)), 20);
    }

    #[test]
    fn requests_per_minute() {
        let (e, clock) = single(Limits {
            requests_per_minute: Some(3),
            ..Limits::default()
        });
        for _ in 0..3 {
            e.check_request().unwrap();
        }
        // One request replenishes every 60 s / 3 = 20 s.
        assert_eq!(
            e.check_request(),
            Err(LimitError::RateLimited {
                retry_after_secs: 20
            })
        );
        clock.advance(Duration::from_millis(18_500));
        assert_eq!(
            e.check_request(),
            Err(LimitError::RateLimited {
                retry_after_secs: 2
            })
        );
        clock.advance(Duration::from_millis(1_500));
        e.check_request().unwrap();
        assert!(e.check_request().is_err());
        // A full minute restores the whole burst.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            e.check_request().unwrap();
        }
        assert!(e.check_request().is_err());
    }

    #[test]
    fn requests_per_minute_state_is_per_key_and_shared_across_lookups() {
        let limits = Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        };
        let (t, _) = table(&[
            with_limits(key("a", KEY_A), limits.clone()),
            with_limits(key("b", KEY_B), limits),
        ]);
        let h = headers(&[("x-api-key", KEY_A)]);
        t.authenticate(&h).unwrap().check_request().unwrap();
        assert!(t.authenticate(&h).unwrap().check_request().is_err());
        t.get("b").unwrap().check_request().unwrap();
    }

    #[test]
    fn concurrency_permits_released_on_drop() {
        let (e, _) = single(Limits {
            concurrent: Some(2),
            ..Limits::default()
        });
        let p1 = e.acquire().unwrap();
        let p2 = e.acquire().unwrap();
        assert_eq!(e.concurrency_available(), Some(0));
        assert_eq!(e.acquire().unwrap_err(), LimitError::TooManyConcurrent);
        drop(p1);
        assert_eq!(e.concurrency_available(), Some(1));
        let p3 = e.acquire().unwrap();
        assert!(e.acquire().is_err());
        drop((p2, p3));
        assert_eq!(e.concurrency_available(), Some(2));
    }

    #[test]
    fn tokens_per_minute_charging_and_recovery() {
        let (e, clock) = single(Limits {
            tokens_per_minute: Some(600), // refills 10 tokens/s
            ..Limits::default()
        });
        assert_eq!(e.tokens_available(), Some(600));
        e.check_request().unwrap();
        e.charge_tokens(500);
        e.check_request().unwrap();
        // Overdraw: 100 - 250 = -150 tokens, back to 0 after 15 s at 10 tokens/s.
        e.charge_tokens(250);
        assert_eq!(e.tokens_available(), Some(-150));
        // Positive only strictly after 15 s (a level of exactly 0 is refused): rounded up, 16.
        assert_eq!(
            e.check_request(),
            Err(LimitError::RateLimited {
                retry_after_secs: 16
            })
        );
        clock.advance(Duration::from_secs(15));
        assert_eq!(e.tokens_available(), Some(0));
        assert_eq!(
            e.check_request(),
            Err(LimitError::RateLimited {
                retry_after_secs: 1
            })
        );
        clock.advance(Duration::from_millis(100));
        e.check_request().unwrap();
        // Refill caps at one minute's worth.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(e.tokens_available(), Some(600));
    }

    #[test]
    fn tokens_per_minute_retry_after_is_plausible() {
        let (e, clock) = single(Limits {
            tokens_per_minute: Some(60_000), // 1000 tokens/s
            ..Limits::default()
        });
        e.charge_tokens(60_000 + 2_500);
        // -2500 tokens at 1000/s → positive just after 2.5 s.
        assert_eq!(
            e.check_request(),
            Err(LimitError::RateLimited {
                retry_after_secs: 3
            })
        );
        clock.advance(Duration::from_secs(3));
        e.check_request().unwrap();
    }

    #[test]
    fn token_refusal_does_not_consume_request_quota() {
        let (e, clock) = single(Limits {
            requests_per_minute: Some(1),
            tokens_per_minute: Some(60),
            ..Limits::default()
        });
        e.charge_tokens(61);
        assert!(e.check_request().is_err());
        assert!(e.check_request().is_err());
        clock.advance(Duration::from_millis(1_100));
        e.check_request().unwrap(); // the single request of the minute is still there
        assert!(e.check_request().is_err());
    }

    #[test]
    fn admit_combines_limits_and_returns_the_slot_on_refusal() {
        let (e, clock) = single(Limits {
            requests_per_minute: Some(1),
            concurrent: Some(1),
            tokens_per_minute: Some(6_000),
        });
        let p = e.admit().unwrap();
        assert_eq!(e.admit().unwrap_err(), LimitError::TooManyConcurrent);
        drop(p);
        // rpm exhausted: refused, and the concurrency slot is given back.
        assert!(matches!(
            e.admit(),
            Err(LimitError::RateLimited {
                retry_after_secs: 60
            })
        ));
        assert_eq!(e.concurrency_available(), Some(1));
        clock.advance(Duration::from_secs(60));
        let p = e.admit().unwrap();
        e.charge_tokens(7_000);
        drop(p);
        clock.advance(Duration::from_secs(60));
        // -1000 + 6000 refilled = 5000; charging 6000 overdraws again: the bucket refuses even
        // though the request quota is back, and the slot is given back.
        e.charge_tokens(6_000);
        assert!(matches!(e.admit(), Err(LimitError::RateLimited { .. })));
        assert_eq!(e.concurrency_available(), Some(1));
    }

    #[test]
    fn zero_limits_fail_closed_for_good() {
        let (e, _) = single(Limits {
            requests_per_minute: Some(0),
            concurrent: Some(0),
            tokens_per_minute: None,
        });
        let closed = LimitError::Closed {
            who: "a".into(),
            limit: "requestsPerMinute",
        };
        assert_eq!(e.check_request(), Err(closed.clone()));
        assert_eq!(e.admit().unwrap_err(), closed);
        let (e, clock) = single(Limits {
            tokens_per_minute: Some(0),
            ..Limits::default()
        });
        clock.advance(Duration::from_secs(3600));
        let api: ApiError = e.admit().unwrap_err().into();
        assert_eq!(
            api.message,
            "`a` has tokensPerMinute set to 0: every request is refused"
        );
        assert_eq!((api.retry_after, api.final_answer), (None, true));
        let (e, _) = single(Limits {
            concurrent: Some(0),
            ..Limits::default()
        });
        assert!(matches!(
            e.admit(),
            Err(LimitError::Closed {
                limit: "concurrent",
                ..
            })
        ));
    }

    #[test]
    fn a_request_larger_than_the_token_quota_is_refused_for_good() {
        let (e, _) = single(Limits {
            tokens_per_minute: Some(10_000),
            ..Limits::default()
        });
        e.check_size(10_000).unwrap();
        let err = e.check_size(12_500).unwrap_err();
        assert_eq!(
            err,
            LimitError::TooLarge {
                who: "a".into(),
                estimated: 12_500,
                limit: 10_000
            }
        );
        let api: ApiError = err.into();
        assert_eq!(api.kind, ErrorKind::RateLimit);
        assert_eq!((api.retry_after, api.final_answer), (None, true));
        // Without a token limit any size fits; ordinary refusals stay retryable.
        let (e, _) = single(Limits::default());
        e.check_size(u64::MAX).unwrap();
        let api: ApiError = LimitError::RateLimited {
            retry_after_secs: 4,
        }
        .into();
        assert_eq!((api.retry_after, api.final_answer), (Some(4), false));
    }

    #[test]
    fn reload_keeps_state_of_unchanged_keys() {
        let limits = Limits {
            requests_per_minute: Some(1),
            concurrent: Some(1),
            ..Limits::default()
        };
        let a = with_limits(key("a", KEY_A), limits.clone());
        let b = with_limits(key("b", KEY_B), limits.clone());
        let (t1, _) = table(&[a.clone(), b.clone()]);
        let ea = t1.get("a").unwrap().clone();
        ea.check_request().unwrap();
        let _held = ea.acquire().unwrap();
        t1.get("b").unwrap().check_request().unwrap();

        let mut b2 = b.clone();
        b2.limits.requests_per_minute = Some(2);
        let t2 = t1.reload(&[a, b2]);
        let ea2 = t2.get("a").unwrap();
        assert!(Arc::ptr_eq(&ea, ea2));
        assert!(ea2.check_request().is_err());
        assert!(ea2.acquire().is_err(), "in-flight permit still counted");
        // Changed entry starts fresh.
        let eb2 = t2.get("b").unwrap();
        assert!(!Arc::ptr_eq(t1.get("b").unwrap(), eb2));
        eb2.check_request().unwrap();
        // Dropped keys no longer authenticate.
        let t3 = t2.reload(&[key("b", KEY_B)]);
        assert_eq!(
            t3.authenticate(&headers(&[("x-api-key", KEY_A)]))
                .unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn debug_never_reveals_the_key() {
        let (t, _) = table(&[with_limits(
            key("a", KEY_A),
            Limits {
                requests_per_minute: Some(5),
                concurrent: Some(2),
                tokens_per_minute: Some(100),
            },
        )]);
        let h = headers(&[("x-api-key", KEY_A)]);
        let e = t.authenticate(&h).unwrap();
        let permit = e.acquire().unwrap();
        let hash = hash_key(KEY_A);
        for dbg in [
            format!("{t:?}"),
            format!("{t:#?}"),
            format!("{e:?}"),
            format!("{permit:?}"),
            format!("{:?}", AuthError::Invalid),
            format!("{:?}", e.authorize_route("x")),
            format!(
                "{:?}",
                t.authenticate(&headers(&[("x-api-key", "sk-nope")]))
            ),
        ] {
            assert!(!dbg.contains(KEY_A), "{dbg}");
            assert!(!dbg.contains("sk-nope"), "{dbg}");
            assert!(!dbg.contains(&hash), "{dbg}");
        }
        assert!(format!("{e:?}").contains("\"a\""));
    }

    #[test]
    fn counts_share_the_request_quota_but_not_tokens_or_concurrency() {
        let (k, _) = single(Limits {
            requests_per_minute: Some(2),
            concurrent: Some(1),
            tokens_per_minute: Some(10),
        });
        let _busy = k.admit().expect("first request admitted");
        k.charge_tokens(1_000); // bucket overdrawn
        assert!(k.admit_count().is_ok(), "no slot or token bucket needed");
        assert!(matches!(
            k.admit_count(),
            Err(LimitError::RateLimited { .. })
        ));
        let (closed, _) = single(Limits {
            tokens_per_minute: Some(0),
            ..Limits::default()
        });
        assert!(matches!(
            closed.admit_count(),
            Err(LimitError::Closed { .. })
        ));
    }
}
