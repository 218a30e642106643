//! `relay-floor`: the proxy's HTTP stack and nothing else, for `bench/run`'s `floor` column.
//!
//! hyper-util's HTTP/1 + HTTP/2 server configured as `switchyard-proxy` configures it
//! (`proxy/src/http/serve.rs`), the same reqwest client settings behind it
//! (`proxy/src/upstream/mod.rs`), and the same allocator. Request and answer bytes pass
//! through unchanged to the same path on the upstream (the mock's `/v1/messages` for
//! Anthropic clients, `/v1/chat/completions` for OpenAI ones): no parsing, translation,
//! routing, limits, logging or metrics. Its CPU per request and per token and its memory per
//! open stream are what any proxy built on these crates pays before doing any work of its
//! own, the floor under the proxy's figures (bench/PROFILE.md).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// As the proxy's (`proxy/src/main.rs`).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Largest request body passed on (the proxy's default limit).
const MAX_BODY: usize = 32 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "relay-floor",
    about = "Pass-through relay on the proxy's HTTP stack (benchmark floor)"
)]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:18003")]
    listen: std::net::SocketAddr,
    /// Upstream base URL without a path, e.g. http://127.0.0.1:18000.
    #[arg(long)]
    upstream: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "relay-floor listens on loopback only"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build()?;
    let relay = Arc::new(Relay {
        client,
        upstream: args.upstream.trim_end_matches('/').to_owned(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let builder = Arc::new(builder);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tcp.set_nodelay(true)?;
        let (builder, relay) = (builder.clone(), relay.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let relay = relay.clone();
                async move { Ok::<_, Infallible>(relay.pass(req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

struct Relay {
    client: reqwest::Client,
    upstream: String,
}

impl Relay {
    /// Sends the request on and streams the answer back; an upstream failure is a bare 502.
    async fn pass(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        match self.try_pass(req).await {
            Ok(resp) => resp,
            Err(e) => {
                let mut resp = http::Response::new(Body::from(format!("relay-floor: {e:#}")));
                *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
                resp
            }
        }
    }

    async fn try_pass(&self, req: http::Request<Incoming>) -> anyhow::Result<http::Response<Body>> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(Body::new(body), MAX_BODY).await?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers;
        for h in [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
        ] {
            headers.remove(h);
        }
        let resp = self
            .client
            .request(parts.method, format!("{}{path}", self.upstream))
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let resp: http::Response<reqwest::Body> = resp.into();
        Ok(resp.map(Body::new))
    }
}
