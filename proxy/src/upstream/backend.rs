//! A backend as requests see it: its URLs without credentials, its endpoints, key and
//! discovery state. Built by `config`; read by everything that talks to the backend.

use crate::routing::balance::{Endpoint, RetryBudgetState};
use std::sync::Arc;
use switchyard_api::Backend;

/// A secret value that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Credentials a configured backend URL carries (`http://user:pass@host/v1?key=…`). They are
/// taken out of the URL the proxy keeps, logs, counts and shows in errors, and put back on
/// each request by `upstream::authorize`: user info as HTTP basic auth, the query appended.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlCredentials {
    /// The URL without them (as reqwest normalises it, no trailing slash): requests under it
    /// get these credentials.
    pub base: String,
    /// `scheme://host:port`: requests at the server root (`/version`, `/tokenize`) get them too.
    pub origin: String,
    /// Percent-decoded user name and password.
    pub basic: Option<(Secret, Option<Secret>)>,
    /// Query pairs, decoded.
    pub query: Vec<(String, Secret)>,
}

impl std::fmt::Debug for UrlCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlCredentials")
            .field("base", &self.base)
            .field("basic", &self.basic.is_some())
            .field("query", &self.query.len())
            .finish()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Secret {}

/// A configured URL as the proxy keeps it (no user info, query or trailing slash) and the
/// credentials taken out of it, if any.
pub fn split_url(url: &str) -> (String, Option<UrlCredentials>) {
    let shown = switchyard_api::validate::redact_url(url)
        .trim_end_matches('/')
        .to_owned();
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return (shown, None);
    };
    let basic = (!parsed.username().is_empty() || parsed.password().is_some()).then(|| {
        (
            Secret(percent_decode(parsed.username())),
            parsed.password().map(|p| Secret(percent_decode(p))),
        )
    });
    let query: Vec<(String, Secret)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), Secret(v.into_owned())))
        .collect();
    if basic.is_none() && query.is_empty() {
        return (shown, None);
    }
    let mut base = parsed.clone();
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base.set_query(None);
    base.set_fragment(None);
    let creds = UrlCredentials {
        base: base.as_str().trim_end_matches('/').to_owned(),
        origin: parsed.origin().ascii_serialization(),
        basic,
        query,
    };
    (shown, Some(creds))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A backend ready to serve: secrets read, URLs normalised. Discovery of the served model and
/// context window happens on first use (see `upstream::discover`), since vLLM may still be
/// loading when the proxy starts.
pub struct BackendRuntime {
    /// As configured: its URLs may hold credentials, so it is never logged (see `Debug`).
    pub spec: Backend,
    /// Base URL without a trailing slash, user info or query, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Replicas requests are spread over (`baseUrl` alone when none are listed); their URLs
    /// are shown form too (no credentials), safe for logs and metrics.
    pub endpoints: Vec<Arc<Endpoint>>,
    pub api_key: Option<Secret>,
    /// Credentials the configured URLs carried, applied by `upstream::authorize`.
    pub url_credentials: Vec<UrlCredentials>,
    pub discovered: Arc<tokio::sync::OnceCell<super::Discovered>>,
    pub retry_budget: Arc<RetryBudgetState>,
}

impl std::fmt::Debug for BackendRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRuntime")
            .field("name", &self.spec.name)
            .field("base_url", &self.base_url)
            .field(
                "endpoints",
                &self.endpoints.iter().map(|e| &e.url).collect::<Vec<_>>(),
            )
            .field("api_key", &self.api_key)
            .field("url_credentials", &self.url_credentials)
            .finish_non_exhaustive()
    }
}
