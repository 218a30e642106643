//! `mock-vllm`: runs the mock vLLM server standalone.
//!
//! Prints exactly one line, `mock-vllm listening on http://ADDR`, to stdout
//! once the socket is bound (with `--listen 127.0.0.1:0` the real port is
//! printed), then serves until SIGINT/SIGTERM.  Logs go to stderr.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use std::time::Duration;

use switchyard_e2e::mock_vllm::{MockConfig, MockVllm, ReasoningField, VllmRelease};

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
    /// vLLM release whose wire behaviour is imitated: 0.34 (current), 0.30
    /// (0.22.1-0.31 context errors) or 0.11.
    #[arg(long, default_value = "0.34")]
    vllm_release: VllmRelease,
    /// Reasoning field name: reasoning (PR #27752) or reasoning_content
    /// (before it).  Defaults to reasoning_content with --vllm-release 0.11.
    #[arg(long)]
    reasoning_field: Option<ReasoningField>,
    /// /tokenize ignores `tools`, as before vLLM 0.9.0 (PR #18187).
    #[arg(long)]
    tokenize_ignores_tools: bool,
    /// Prefill milliseconds per 1,000 prompt tokens (silence before the first chunk).
    #[arg(long, default_value_t = 1)]
    prefill_ms_per_1k_tokens: u64,
    /// Upper bound of the prefill time, in milliseconds.
    #[arg(long, default_value_t = 50)]
    prefill_cap_ms: u64,
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
    let reasoning_field = args.reasoning_field.unwrap_or(match args.vllm_release {
        VllmRelease::V0_11 => ReasoningField::ReasoningContent,
        _ => ReasoningField::Reasoning,
    });
    let cfg = MockConfig {
        served_model_name: args.served_model_name,
        max_model_len: args.max_model_len,
        vllm_release: args.vllm_release,
        reasoning_field,
        tokenize_tools: !args.tokenize_ignores_tools,
        prefill_per_1k_tokens: Duration::from_millis(args.prefill_ms_per_1k_tokens),
        prefill_cap: Duration::from_millis(args.prefill_cap_ms),
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
