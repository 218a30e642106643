use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_api::{Protocol, RoutingSnapshot};
use switchyard_proxy::config::cluster;
use switchyard_proxy::config::litellm;
use switchyard_proxy::config::reload;
use switchyard_proxy::config::{self, Runtime};
use switchyard_proxy::http::serve;
use switchyard_proxy::http::{admin_router, api_router};
use switchyard_proxy::observe::history::{History, Retention};
use switchyard_proxy::state::AppState;
use switchyard_proxy::upstream::health::HealthChecks;

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
    /// Send OpenAI Responses requests (`/v1/responses`, Codex) to --upstream unchanged
    /// instead of translating them: for a vLLM whose own Responses API you want (gpt-oss).
    #[arg(long, requires = "upstream")]
    forward_responses: bool,
    /// Capture every request's content for the request view (what the client sent, the body
    /// sent upstream, the answer; redacted): `server.logContent` of a config file.
    #[arg(long, requires = "upstream")]
    log_content: bool,
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
    /// Admin listener: /metrics, /healthz, /readyz, /config, the request view (/ui, /api/…).
    #[arg(long, default_value = "0.0.0.0:4001")]
    admin_listen: SocketAddr,
    /// Key the admin API (/api/…, what /ui shows) wants as `Authorization: Bearer`; without
    /// it that API is open to whoever reaches the admin listener.
    #[arg(long, env = "SWITCHYARD_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// SQLite file for the request history (created if missing): the request view's list
    /// and usage then outlive a restart. Without it the last 1,000 requests are kept in memory.
    #[arg(long, env = "SWITCHYARD_HISTORY", conflicts_with = "history_postgres")]
    history: Option<PathBuf>,
    /// PostgreSQL for the request history instead (`postgres://user:pass@host/db` or
    /// `host=… user=… dbname=…`): a fleet of proxies then shares one history. Never logged.
    #[arg(long, env = "SWITCHYARD_HISTORY_POSTGRES", hide_env_values = true)]
    history_postgres: Option<String>,
    /// History older than this is deleted.
    #[arg(long, default_value_t = 168)]
    history_max_age_hours: u64,
    /// At most this many requests are kept in the history (the oldest go first).
    #[arg(long, default_value_t = 1_000_000)]
    history_max_rows: u64,
    /// SQLite history only: the oldest requests go once the table's pages take more than
    /// this (checked after every write, so a file on a size-limited volume stays within it).
    #[arg(long)]
    history_max_mb: Option<u64>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Longest a client may take to send a request's head (request line and headers), from
    /// its connection (first request) or the end of the answer before (later ones, so an idle
    /// keep-alive connection is closed after this time too); then the connection is closed.
    /// Bodies have `server.bodyReadTimeoutMs`.
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
                switchyard_proxy::routing::keys::hash_key(key.trim_end_matches(['\n', '\r']))
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
        (None, None, Some(url)) => {
            let mut snapshot = config::single_upstream(
                url,
                cli.upstream_protocol,
                cli.served_model.clone(),
                cli.context_window,
                cli.upstream_api_key_env.clone(),
            );
            if cli.forward_responses {
                snapshot.routes[0].responses_api = switchyard_api::ResponsesApi::Forward;
            }
            snapshot.server.log_content = cli.log_content;
            snapshot
        }
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
    if let Some(history) = open_history(&cli).await? {
        state.records.attach_history(history);
    }
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
    let admin = tokio::net::TcpListener::bind(cli.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.admin_listen))?;
    tracing::info!(
        api = %api_addr,
        admin = %admin.local_addr()?,
        version = %state.runtime.load().version,
        "switchyard-proxy listening"
    );
    let admin_key = cli.admin_key.clone().filter(|k| !k.is_empty());
    if admin_key.is_none() && !cli.admin_listen.ip().is_loopback() {
        tracing::warn!(
            admin = %cli.admin_listen,
            "no admin key: the request view's API (/api/requests) is open to anyone who reaches the admin listener"
        );
    }
    let admin_app = admin_router(state.clone(), admin_key);
    tokio::spawn(async move { axum::serve(admin, admin_app).await });

    // SIGTERM: /readyz fails at once; requests are still accepted for the grace period (load
    // balancers need a moment to notice); then the listener closes and in-flight streams
    // drain until they end or the drain deadline passes.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_state = state.clone();
    let shutdown = async move {
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
    };
    let head_timeout = Duration::from_millis(cli.header_read_timeout_ms.max(1));
    let server = serve::serve(api, api_router(state.clone()), head_timeout, shutdown);
    let drain_deadline = async {
        if drain_rx.await.is_ok() {
            let ms = state.runtime.load().settings.drain_timeout_ms;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => {}
        _ = drain_deadline => tracing::warn!("drain deadline passed; exiting with streams still open"),
    }
    // Records of the last requests still queued for the history file are written now.
    let closing = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(h) = closing.records.history() {
            h.close(Duration::from_secs(5));
        }
    })
    .await;
    tracing::info!("shut down");
    Ok(())
}

/// The request history the command line asks for, if any.
async fn open_history(cli: &Cli) -> anyhow::Result<Option<History>> {
    let keep = Retention {
        max_age: Duration::from_secs(cli.history_max_age_hours.saturating_mul(3600)),
        max_rows: cli.history_max_rows,
        max_bytes: cli.history_max_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
    };
    if let Some(path) = &cli.history {
        let history = History::sqlite(path, keep)
            .with_context(|| format!("cannot open the request history {}", path.display()))?;
        tracing::info!(path = %path.display(), "request history in SQLite");
        return Ok(Some(history));
    }
    let Some(dsn) = &cli.history_postgres else {
        return Ok(None);
    };
    // The parse error would quote the DSN (and its password): replaced by a fixed message.
    let config: postgres::Config = dsn.parse().map_err(|_| {
        anyhow::anyhow!(
            "--history-postgres is not a PostgreSQL connection string (URL or key=value)"
        )
    })?;
    // The blocking client may not start inside the async runtime's own threads.
    let history = tokio::task::spawn_blocking(move || History::postgres(&config, keep))
        .await?
        .context("cannot open the request history in PostgreSQL")?;
    tracing::info!("request history in PostgreSQL");
    Ok(Some(history))
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
