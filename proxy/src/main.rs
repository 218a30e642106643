use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_api::{Protocol, RoutingSnapshot};
use switchyard_proxy::cluster;
use switchyard_proxy::config::{self, Runtime};
use switchyard_proxy::health::HealthChecks;
use switchyard_proxy::litellm;
use switchyard_proxy::reload;
use switchyard_proxy::server::{admin_router, api_router, AppState};

/// jemalloc, chosen by measurement: with glibc's malloc the proxy kept its peak (86 MB after
/// 1,000 streams, 27 MB idle) long after the streams were gone; see bench/README.md.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Unused pages go back to the system a second after they are freed (jemalloc's default is
/// 10 s), purged by jemalloc's background thread rather than on the request path.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Serves the Anthropic Messages API (what Claude Code speaks) in front of vLLM.
#[derive(Parser, Debug)]
#[command(
    name = "switchyard-proxy",
    version,
    about,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Routing config (YAML snapshot: backends and routes), reloaded on change. See examples/.
    #[arg(long, conflicts_with_all = ["upstream", "litellm_config"])]
    config: Option<PathBuf>,
    /// A LiteLLM proxy config, served as it is (unsupported settings are listed as warnings).
    #[arg(long, conflicts_with = "upstream")]
    litellm_config: Option<PathBuf>,
    /// Zero-config: route every model name to this server, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, required_unless_present_any = ["config", "litellm_config", "kube_namespace"])]
    upstream: Option<String>,
    /// Protocol of --upstream: `openai` (Chat Completions) or `anthropic` (/v1/messages).
    #[arg(long, default_value = "openai", value_parser = config::parse_protocol, requires = "upstream")]
    upstream_protocol: Protocol,
    /// Served model name of --upstream (discovered from /v1/models when omitted).
    #[arg(long, requires = "upstream")]
    served_model: Option<String>,
    /// Context window of --upstream in tokens (discovered from vLLM's max_model_len when omitted).
    #[arg(long, requires = "upstream")]
    context_window: Option<u32>,
    /// Name of the environment variable holding --upstream's API key.
    #[arg(long, requires = "upstream")]
    upstream_api_key_env: Option<String>,
    /// Cluster mode: namespace of the operator's snapshot ConfigMap and credentials Secret,
    /// watched through the Kubernetes API (in-cluster service account, or KUBECONFIG).
    #[arg(
        long,
        requires_all = ["kube_snapshot", "kube_credentials"],
        conflicts_with_all = ["config", "litellm_config", "upstream"]
    )]
    kube_namespace: Option<String>,
    /// Cluster mode: name of the snapshot ConfigMap (YAML snapshot under key `snapshot.yaml`).
    #[arg(long, requires = "kube_namespace")]
    kube_snapshot: Option<String>,
    /// Cluster mode: name of the credentials Secret (`backend.<name>.apiKey` keys).
    #[arg(long, requires = "kube_namespace")]
    kube_credentials: Option<String>,
    /// Cluster mode: seconds to wait at start-up for a servable snapshot before exiting.
    #[arg(long, default_value_t = 150, requires = "kube_namespace")]
    kube_initial_timeout: u64,
    /// Client API listener.
    #[arg(long, default_value = "0.0.0.0:4000")]
    listen: SocketAddr,
    /// Admin listener: /metrics, /healthz, /readyz, /config.
    #[arg(long, default_value = "0.0.0.0:4001")]
    admin_listen: SocketAddr,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Longest a client may take to send a request's head (request line and headers), from
    /// its connection (first request) or its first byte (later ones); then the connection is
    /// closed. Bodies have `server.bodyReadTimeoutMs`.
    #[arg(long, default_value_t = 10_000)]
    header_read_timeout_ms: u64,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print the Switchyard config equivalent to a LiteLLM proxy config (warnings on stderr).
    ConvertLitellm { file: PathBuf },
    /// Print the hex SHA-256 of a client API key read from standard input, for `keys[].sha256`.
    HashKey,
}

fn main() {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::ConvertLitellm { file }) => std::process::exit(convert_litellm(file)),
        Some(Command::HashKey) => {
            let mut key = String::new();
            let _ = std::io::stdin().read_line(&mut key);
            println!(
                "{}",
                switchyard_proxy::keys::hash_key(key.trim_end_matches(['\n', '\r']))
            );
            return;
        }
        None => {}
    }
    init_tracing(&cli.log_format);
    // Loaded before the async runtime starts: a LiteLLM config's literal secrets are put in
    // the environment here, while the process has one thread.
    // Cluster mode reads its snapshot from the API server once the async runtime runs.
    let snapshot = match cli.kube_namespace.is_none().then(|| load(&cli)).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchyard-proxy: {e:#}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Err(e) = rt.block_on(run(cli, snapshot)) {
        eprintln!("switchyard-proxy: {e:#}");
        std::process::exit(1);
    }
}

fn convert_litellm(file: &Path) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("switchyard-proxy: cannot read {}: {e}", file.display());
            return 1;
        }
    };
    match litellm::convert(&text) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", c.to_yaml());
            0
        }
        Err(e) => {
            eprintln!("switchyard-proxy: {}: {e}", file.display());
            1
        }
    }
}

/// The LiteLLM config as a snapshot; its warnings are logged, never silently ignored.
fn load_litellm(path: &Path, export_secrets: bool) -> Result<RoutingSnapshot, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let c = litellm::convert(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for w in &c.warnings {
        tracing::warn!(setting = %w, "LiteLLM setting not carried over as it is");
    }
    if export_secrets {
        for (name, value) in &c.secret_env {
            // Single-threaded here (see main).
            std::env::set_var(name, value.expose());
        }
    } else if !c.secret_env.is_empty() {
        tracing::warn!("literal keys in a reloaded LiteLLM config are only read at start-up");
    }
    Ok(c.snapshot)
}

fn load(cli: &Cli) -> anyhow::Result<RoutingSnapshot> {
    Ok(match (&cli.config, &cli.litellm_config, &cli.upstream) {
        (Some(path), _, _) => config::load_file(path)?,
        (None, Some(path), _) => load_litellm(path, true).map_err(anyhow::Error::msg)?,
        (None, None, Some(url)) => config::single_upstream(
            url,
            cli.upstream_protocol,
            cli.served_model.clone(),
            cli.context_window,
            cli.upstream_api_key_env.clone(),
        ),
        (None, None, None) => {
            unreachable!("clap requires --config, --litellm-config or --upstream")
        }
    })
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli, snapshot: Option<RoutingSnapshot>) -> anyhow::Result<()> {
    let (runtime, kube) = match snapshot {
        Some(snapshot) => (Runtime::build(snapshot)?, None),
        None => {
            let source = cluster::Source {
                namespace: cli.kube_namespace.clone().expect("cluster mode"),
                configmap: cli.kube_snapshot.clone().expect("clap requires it"),
                secret: cli.kube_credentials.clone().expect("clap requires it"),
            };
            let client = kube::Client::try_default().await.context(
                "cannot configure the Kubernetes client (in-cluster service account or KUBECONFIG)",
            )?;
            let timeout = Duration::from_secs(cli.kube_initial_timeout);
            let runtime = cluster::initial_load(&client, &source, timeout).await?;
            (runtime, Some((client, source)))
        }
    };
    let state = AppState::new(runtime);
    // Discover every backend now so a misconfiguration shows in the first log lines; a backend
    // still loading is retried on first use.
    for backend in state.runtime.load().backends.iter() {
        if let Err(e) = switchyard_proxy::upstream::discover(&state.client, backend).await {
            tracing::warn!(error = %e, "backend not ready yet; will retry on first request");
        }
    }
    let health = HealthChecks::start(state.client.clone(), &state.runtime.load());
    if let Some((client, source)) = kube {
        tokio::spawn(cluster::watch(
            state.clone(),
            health.clone(),
            client,
            source,
        ));
    } else if let Some(path) = cli.config.clone() {
        tokio::spawn(reload::watch(state.clone(), path, health.clone(), |p| {
            config::load_file(p).map_err(|e| e.to_string())
        }));
    } else if let Some(path) = cli.litellm_config.clone() {
        tokio::spawn(reload::watch(state.clone(), path, health.clone(), |p| {
            load_litellm(p, false)
        }));
    }
    let api = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let api_addr = api.local_addr()?;
    let api = head_deadline::ClientListener::new(
        api,
        Duration::from_millis(cli.header_read_timeout_ms.max(1)),
    );
    let admin = tokio::net::TcpListener::bind(cli.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.admin_listen))?;
    tracing::info!(
        api = %api_addr,
        admin = %admin.local_addr()?,
        version = %state.runtime.load().version,
        "switchyard-proxy listening"
    );
    let admin_app = admin_router(state.clone());
    tokio::spawn(async move { axum::serve(admin, admin_app).await });

    // SIGTERM: /readyz fails at once; requests are still accepted for the grace period (load
    // balancers need a moment to notice); then the listener closes and in-flight streams
    // drain until they end or the drain deadline passes.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_state = state.clone();
    let server = axum::serve(api, api_router(state.clone())).with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown_state.ready.store(false, Ordering::Relaxed);
        let settings = shutdown_state.runtime.load().settings.clone();
        tracing::info!(
            grace_ms = settings.shutdown_grace_ms,
            "SIGTERM: not ready; accepting for the grace period"
        );
        tokio::time::sleep(Duration::from_millis(settings.shutdown_grace_ms)).await;
        tracing::info!(
            drain_ms = settings.drain_timeout_ms,
            "listener closed; draining in-flight requests"
        );
        let _ = drain_tx.send(());
    });
    let drain_deadline = async {
        if drain_rx.await.is_ok() {
            let ms = state.runtime.load().settings.drain_timeout_ms;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r?,
        _ = drain_deadline => tracing::warn!("drain deadline passed; exiting with streams still open"),
    }
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}

/// Client connections with a deadline on each request head: axum's `serve` gives hyper no
/// timer, so hyper's own `header_read_timeout` never runs, and a client that opens a
/// connection and sends nothing (or a byte now and then, never finishing its headers) would
/// hold it for ever (slow loris). axum offers no way to configure the hyper builder it uses.
mod head_deadline {
    use axum::serve::Listener;
    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::{Instant, Sleep};

    /// The API listener: `TCP_NODELAY` and a [`HeadDeadline`] on every connection.
    pub struct ClientListener {
        inner: TcpListener,
        timeout: Duration,
    }

    impl ClientListener {
        pub fn new(inner: TcpListener, timeout: Duration) -> Self {
            Self { inner, timeout }
        }
    }

    impl Listener for ClientListener {
        type Io = HeadDeadline<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            let (tcp, addr) = Listener::accept(&mut self.inner).await;
            // A stream is many small writes (an event per token): with Nagle's algorithm
            // each waits for the client's (delayed, up to 40 ms) ACK of the one before.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
            }
            (HeadDeadline::new(tcp, self.timeout), addr)
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }
    }

    /// Head bytes kept to find `Content-Length` (hyper refuses larger heads anyway).
    const HEAD_KEPT: usize = 64 * 1024;

    /// Where the client is in its byte stream.
    #[derive(Debug, PartialEq)]
    enum Phase {
        /// Sending a request head; `armed` once the deadline runs (from the connection for
        /// the first request, from the first byte for later ones: an idle keep-alive
        /// connection between requests is not timed out here).
        Head {
            armed: bool,
            matched: u8,
            head: Vec<u8>,
        },
        /// Sending a `Content-Length` body; the body's own timeout is the handler's.
        Body { left: u64 },
        /// Past what this light reading follows (a chunked body, HTTP/2): no deadline.
        Untracked,
    }

    /// An HTTP/1 connection whose request heads must arrive within `timeout`; then reads
    /// fail (`TimedOut`) and hyper closes the connection. It follows the byte stream just
    /// enough to know where heads start: the end of a head (`\r\n\r\n`), then its
    /// `Content-Length` body.
    pub struct HeadDeadline<T> {
        io: T,
        timeout: Duration,
        phase: Phase,
        deadline: Pin<Box<Sleep>>,
    }

    impl<T> HeadDeadline<T> {
        pub fn new(io: T, timeout: Duration) -> Self {
            Self {
                io,
                timeout,
                phase: Phase::Head {
                    armed: true,
                    matched: 0,
                    head: Vec::new(),
                },
                deadline: Box::pin(tokio::time::sleep(timeout)),
            }
        }

        fn armed(&self) -> bool {
            matches!(self.phase, Phase::Head { armed: true, .. })
        }

        /// Follows the bytes just read.
        fn observe(&mut self, mut bytes: &[u8]) {
            while !bytes.is_empty() {
                bytes = match &mut self.phase {
                    Phase::Untracked => return,
                    Phase::Body { left } => {
                        let n = bytes
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= n as u64;
                        if *left == 0 {
                            self.phase = next_head();
                        }
                        &bytes[n..]
                    }
                    Phase::Head { .. } => self.observe_head(bytes),
                };
            }
        }

        /// Head bytes: arms the deadline on the first, moves on at the head's end. Returns
        /// the bytes after the head.
        fn observe_head<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
            let Phase::Head {
                armed,
                matched,
                head,
            } = &mut self.phase
            else {
                return bytes;
            };
            if !*armed {
                *armed = true;
                let at = Instant::now() + self.timeout;
                self.deadline.as_mut().reset(at);
            }
            for (i, &b) in bytes.iter().enumerate() {
                *matched = match (b, *matched) {
                    (b'\r', 0 | 2) => *matched + 1,
                    (b'\n', 1 | 3) => *matched + 1,
                    (b'\r', _) => 1,
                    _ => 0,
                };
                if *matched == 4 {
                    let take = (i + 1).min(HEAD_KEPT.saturating_sub(head.len()));
                    head.extend_from_slice(&bytes[..take]);
                    let head = std::mem::take(head);
                    self.phase = after_head(&head);
                    return &bytes[i + 1..];
                }
            }
            let room = HEAD_KEPT.saturating_sub(head.len());
            head.extend_from_slice(&bytes[..bytes.len().min(room)]);
            &[]
        }
    }

    fn next_head() -> Phase {
        Phase::Head {
            armed: false,
            matched: 0,
            head: Vec::new(),
        }
    }

    /// What follows a complete head: its `Content-Length` body, the next head, or (a
    /// chunked body, an HTTP/2 preface, a head too large to read) nothing followed.
    fn after_head(head: &[u8]) -> Phase {
        let text = String::from_utf8_lossy(head).to_ascii_lowercase();
        if text.starts_with("pri * http/2") || head.len() >= HEAD_KEPT {
            return Phase::Untracked;
        }
        let mut length = None;
        for line in text.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim() {
                "transfer-encoding" => return Phase::Untracked,
                "content-length" => match value.trim().parse::<u64>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return Phase::Untracked,
                },
                _ => {}
            }
        }
        match length {
            Some(left) if left > 0 => Phase::Body { left },
            _ => next_head(),
        }
    }

    impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.armed() && self.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received within the header read timeout",
                )));
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
            let this = &mut *self;
            this.observe(&buf.filled()[before..]);
            Poll::Ready(Ok(()))
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn conn() -> HeadDeadline<()> {
            HeadDeadline::new((), Duration::from_secs(1))
        }

        #[tokio::test]
        async fn follows_heads_and_bodies_across_reads() {
            let mut c = conn();
            assert!(c.armed(), "the first head is timed from the connection");
            c.observe(b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r");
            assert!(c.armed());
            c.observe(b"\n\r\nab");
            assert_eq!(c.phase, Phase::Body { left: 3 });
            c.observe(b"cdeGET / HTTP/1.1\r\n");
            assert!(c.armed(), "a pipelined head is timed from its first byte");
            c.observe(b"\r\n");
            assert_eq!(c.phase, next_head());
            assert!(!c.armed(), "idle between requests");
            c.observe(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n");
            assert_eq!(c.phase, Phase::Untracked);
        }

        #[tokio::test]
        async fn bad_lengths_and_http2_are_not_followed() {
            let mut c = conn();
            c.observe(b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n");
            assert_eq!(c.phase, Phase::Untracked);
            let mut c = conn();
            c.observe(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            assert_eq!(c.phase, Phase::Untracked);
        }
    }
}
