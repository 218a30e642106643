//! `mock-vllm`: runs the mock vLLM server standalone.
//!
//! Prints exactly one line, `mock-vllm listening on http://ADDR`, to stdout
//! once the socket is bound (with `--listen 127.0.0.1:0` the real port is
//! printed), then serves until SIGINT/SIGTERM.  Logs go to stderr.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm, ReasoningField};

#[derive(Debug, Parser)]
#[command(name = "mock-vllm", about = "Mock of vLLM's OpenAI-compatible server")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Model name accepted in requests and reported by /v1/models.
    #[arg(long, default_value = "qwen3-coder")]
    served_model_name: String,
    /// Context window used by the length checks.
    #[arg(long, default_value_t = 32768)]
    max_model_len: u32,
    /// Reasoning field name: reasoning_content (vLLM <= 0.11) or reasoning.
    #[arg(long, default_value = "reasoning_content")]
    reasoning_field: ReasoningField,
    /// `root` reported by /v1/models.
    #[arg(long, default_value = "/models/Qwen3-Coder")]
    root: String,
    /// Allow system messages anywhere (default: only first, like Qwen3's template).
    #[arg(long)]
    no_strict_system: bool,
    /// Behave as if --enable-auto-tool-choice/--tool-call-parser were not given.
    #[arg(long)]
    no_tool_parser: bool,
    /// Do not serve /v1/messages.
    #[arg(long)]
    no_anthropic_endpoint: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let cfg = MockConfig {
        served_model_name: args.served_model_name,
        max_model_len: args.max_model_len,
        reasoning_field: args.reasoning_field,
        strict_system: !args.no_strict_system,
        tool_parser: !args.no_tool_parser,
        anthropic_endpoint: !args.no_anthropic_endpoint,
        root: args.root,
    };
    let mock = MockVllm::start(cfg, args.listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock-vllm listening on http://{}", mock.addr)?;
        out.flush()?;
    }
    tracing::info!(addr = %mock.addr, "mock vLLM serving");
    shutdown_signal().await;
    mock.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
