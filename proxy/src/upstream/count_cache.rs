//! A bounded cache of the backends' exact prompt counts, for `count_tokens`.

use super::backend::BackendRuntime;
use crate::protocol::openai::ChatRequest;
use crate::upstream;
use tokio::sync::Semaphore;

/// Entries kept by [`CountCache`] (a digest and a number each: ~50 bytes).
const COUNT_CACHE_ENTRIES: usize = 1024;
/// Upstream `/tokenize` calls for `count_tokens` at once, the whole proxy together.
const COUNTS_IN_FLIGHT: usize = 4;

/// Bounds what `count_tokens` costs the backends, which would otherwise run a tokenizer
/// pass over a whole conversation on every call, for anyone who can reach the proxy.
///
/// - Answers are cached by the SHA-256 of (backend, translated request): Claude Code counts
///   the same prefix (system prompt, tool definitions) again and again. At most
///   [`COUNT_CACHE_ENTRIES`] entries (quick_cache's CLOCK-Pro eviction: a count asked for
///   again outlives one-off ones).
/// - At most [`COUNTS_IN_FLIGHT`] counts go upstream at once; a call beyond that gets the
///   estimate at once rather than queueing behind them (a count is advisory: it must be
///   fast, and generation requests must not wait behind tokenizer passes).
///
/// Not chosen: asking upstream only when the estimate is near the window. Clients show the
/// count (Claude Code's context display), so it must be exact at any size.
pub struct CountCache {
    entries: quick_cache::sync::Cache<[u8; 32], u64>,
    upstream: Semaphore,
}

impl Default for CountCache {
    fn default() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(COUNT_CACHE_ENTRIES),
            upstream: Semaphore::new(COUNTS_IN_FLIGHT),
        }
    }
}

impl CountCache {
    pub async fn count(
        &self,
        client: &reqwest::Client,
        backend: &BackendRuntime,
        chat: &ChatRequest,
    ) -> Option<u64> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(backend.spec.name.as_bytes());
        digest.update([0]);
        digest.update(serde_json::to_vec(chat).ok()?);
        let key: [u8; 32] = digest.finalize().into();
        if let Some(n) = self.entries.get(&key) {
            return Some(n);
        }
        let Ok(_permit) = self.upstream.try_acquire() else {
            tracing::debug!("count_tokens: upstream counts busy; answering the estimate");
            return None;
        };
        match upstream::tokenize(client, backend, &backend.base_url, chat).await {
            Ok(n) => {
                self.entries.insert(key, n);
                Some(n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "exact token count unavailable; using the estimate");
                None
            }
        }
    }
}
