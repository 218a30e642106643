use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use switchyard_api::Protocol;
use switchyard_proxy::config::{self, Runtime};
use switchyard_proxy::server::{admin_router, api_router, AppState};

/// Serves the Anthropic Messages API (what Claude Code speaks) in front of vLLM.
#[derive(Parser, Debug)]
#[command(name = "switchyard-proxy", version, about)]
struct Cli {
    /// Routing config (YAML snapshot: backends and routes). See examples/.
    #[arg(long, conflicts_with = "upstream")]
    config: Option<PathBuf>,
    /// Zero-config: route every model name to this server, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, required_unless_present = "config")]
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
    /// Client API listener.
    #[arg(long, default_value = "0.0.0.0:4000")]
    listen: SocketAddr,
    /// Admin listener: /metrics, /healthz, /readyz, /config.
    #[arg(long, default_value = "0.0.0.0:4001")]
    admin_listen: SocketAddr,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    if let Err(e) = run(cli).await {
        eprintln!("switchyard-proxy: {e:#}");
        std::process::exit(1);
    }
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let snapshot = match (&cli.config, &cli.upstream) {
        (Some(path), _) => config::load_file(path)?,
        (None, Some(url)) => config::single_upstream(
            url,
            cli.upstream_protocol,
            cli.served_model.clone(),
            cli.context_window,
            cli.upstream_api_key_env.clone(),
        ),
        (None, None) => unreachable!("clap requires one of --config or --upstream"),
    };
    let runtime = Runtime::build(snapshot)?;
    let state = AppState::new(runtime);
    // Discover every backend now so a misconfiguration shows in the first log lines; a backend
    // still loading is retried on first use.
    for backend in state.runtime.load().backends.iter() {
        if let Err(e) = switchyard_proxy::upstream::discover(&state.client, backend).await {
            tracing::warn!(error = %e, "backend not ready yet; will retry on first request");
        }
    }
    let api = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let admin = tokio::net::TcpListener::bind(cli.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.admin_listen))?;
    tracing::info!(
        api = %api.local_addr()?,
        admin = %admin.local_addr()?,
        version = %state.runtime.load().version,
        "switchyard-proxy listening"
    );
    let admin_app = admin_router(state.clone());
    tokio::spawn(async move { axum::serve(admin, admin_app).await });
    let shutdown_state = state.clone();
    axum::serve(api, api_router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown_state.ready.store(false, Ordering::Relaxed);
            tracing::info!("shutting down: draining in-flight requests");
        })
        .await?;
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
