//! `bench`: side-by-side performance figures for three paths to the same mock vLLM.
//!
//! - `direct`: OpenAI Chat Completions straight to `mock-vllm` (the baseline);
//! - `switchyard`: Anthropic Messages through `switchyard-proxy`;
//! - `floor`: the same through `relay-floor`, the proxy's HTTP stack passing bytes to the
//!   mock's own `/v1/messages` (what hyper, reqwest and tokio cost before any work);
//! - `litellm`: Anthropic Messages through the LiteLLM proxy.
//!
//! The `openai` workload speaks OpenAI Chat Completions (`/v1/chat/completions`) to every
//! path instead: the mock's own endpoint, Switchyard's OpenAI front door, LiteLLM's native API.
//!
//! The servers are started by `bench/run`, which passes their URLs and PIDs; this binary only
//! generates load (on loopback, nowhere else), reads the proxies' CPU time and RSS from
//! `/proc`, prints a table and writes the same figures as JSON. See `bench/README.md`.
//!
//! Workloads, each run against every path in turn:
//! 1. `small1`  – small non-streaming requests, one at a time: added latency p50/p99;
//! 2. `small64` – the same at concurrency 64: requests/s, latency, proxy CPU per request;
//! 3. `stream`  – unpaced streams of N tokens: proxy CPU per streamed token;
//! 4. `paced`   – 64 concurrent paced streams: time to first token p50/p99, added vs direct;
//! 5. `claude`  – a real Claude Code request (~50 KB, 12 tools) streaming 1,024 tokens, 16
//!    closed-loop workers: proxy CPU per request, time to first token and total duration
//!    p50/p99, tokens/s;
//! 6. `openai`  – OpenAI Chat Completions in, on every path: small requests at concurrency 64
//!    (requests/s, latency, proxy CPU per request) and unpaced streams with
//!    `stream_options.include_usage` (proxy CPU per streamed token, tokens/s), the sizes of
//!    `small64` and `stream`; a stream without `[DONE]` or short of tokens is an error;
//! 7. `hold`    – 1,000 slowly paced streams open at once: RSS at the peak (and idle).

#[path = "../bench/claude.rs"]
mod claude;
#[path = "../bench/load.rs"]
mod load;
#[path = "../bench/procfs.rs"]
mod procfs;
#[path = "../bench/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use reqwest::header::HeaderMap;
use serde::Serialize;

use claude::ClaudeCode;
use load::{
    at_least, closed_loop, hold_streams, small_once, stream_once, stream_once_with, HoldSpec,
    LoopSpec, Proto, Samples, Target,
};
use procfs::{CpuSample, Watched};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Side-by-side benchmark: direct to mock vLLM, through switchyard-proxy, through LiteLLM"
)]
struct Args {
    /// Base URL of mock-vllm (the direct path), e.g. http://127.0.0.1:18000.
    #[arg(long)]
    direct: String,
    /// PID of mock-vllm (its CPU is reported as load-side cost).
    #[arg(long)]
    mock_pid: Option<u32>,
    /// Base URL of switchyard-proxy's API listener.
    #[arg(long)]
    switchyard: Option<String>,
    /// PID of switchyard-proxy.
    #[arg(long, requires = "switchyard")]
    switchyard_pid: Option<u32>,
    /// Base URL of `relay-floor` (the proxy's HTTP stack passing bytes through, no work of
    /// its own): the floor under the proxy's CPU and memory figures.
    #[arg(long)]
    floor: Option<String>,
    /// PID of relay-floor.
    #[arg(long, requires = "floor")]
    floor_pid: Option<u32>,
    /// Base URL of the LiteLLM proxy.
    #[arg(long)]
    litellm: Option<String>,
    /// PID of the LiteLLM proxy (its descendants are counted too).
    #[arg(long, requires = "litellm")]
    litellm_pid: Option<u32>,
    /// LiteLLM's master key (sent as x-api-key; as a bearer token in the `openai` workload).
    #[arg(long, env = "LITELLM_MASTER_KEY", default_value = "bench")]
    litellm_key: String,
    /// Model name sent on the direct path (the mock's served model name).
    #[arg(long, default_value = "qwen3-coder")]
    direct_model: String,
    /// Model name sent through the proxies (both protocols).
    #[arg(long, default_value = "claude-sonnet-4-5")]
    proxy_model: String,
    /// Short run (about three minutes in all with LiteLLM).
    #[arg(long)]
    quick: bool,
    /// Comma-separated workloads to run: small1,small64,stream,paced,claude,openai,hold.
    #[arg(long, default_value = "small1,small64,stream,paced,claude,openai,hold")]
    workloads: String,
    /// Open streams held by the `hold` workload.
    #[arg(long, default_value_t = 1000)]
    hold_streams: usize,
    /// Concurrency of the `small64`, `paced` and `openai` (small) workloads.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Free-form `key=value` notes recorded with the results (CPU pinning, versions, ...).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// How long to wait for every path to answer before giving up.
    #[arg(long, default_value_t = 120)]
    ready_timeout_secs: u64,
}

/// Sizes and bounds of the workloads.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    mode: &'static str,
    warmup_s: f64,
    small1_s: f64,
    small64_s: f64,
    concurrency: usize,
    stream_s: f64,
    stream_concurrency: usize,
    stream_tokens: u32,
    paced_s: f64,
    paced_tokens: u32,
    paced_pace_ms: u32,
    claude_s: f64,
    claude_concurrency: usize,
    claude_tokens: u32,
    claude_fixture: &'static str,
    hold_streams: usize,
    hold_tokens: u32,
    hold_pace_ms: u32,
    hold_deadline_s: f64,
    hold_for_s: f64,
}

impl Plan {
    fn new(quick: bool, concurrency: usize, hold_streams: usize) -> Self {
        let (warm, s1, s64, st, stok, paced, cc, hdl, hfor) = if quick {
            (0.5, 2.0, 3.0, 3.0, 500, 4.0, 10.0, 15.0, 1.0)
        } else {
            (1.0, 5.0, 10.0, 10.0, 1000, 15.0, 30.0, 40.0, 3.0)
        };
        Plan {
            mode: if quick { "quick" } else { "full" },
            warmup_s: warm,
            small1_s: s1,
            small64_s: s64,
            concurrency,
            stream_s: st,
            stream_concurrency: 8,
            stream_tokens: stok,
            paced_s: paced,
            paced_tokens: 20,
            paced_pace_ms: 50,
            claude_s: cc,
            claude_concurrency: 16,
            claude_tokens: 1024,
            claude_fixture: claude::FIXTURE_PATH,
            hold_streams,
            hold_tokens: 300,
            hold_pace_ms: 200,
            hold_deadline_s: hdl,
            hold_for_s: hfor,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// CPU seconds spent during a window by the proxy, the mock and the bench itself.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Spent {
    wall_s: f64,
    proxy_cpu_s: Option<f64>,
    mock_cpu_s: Option<f64>,
    bench_cpu_s: f64,
    /// CPU used by everything else on the machine during the window, in % of one core
    /// (other processes compete with the benchmark and disturb its figures).
    other_cpu_pct: f64,
}

impl Spent {
    fn per(&self, units: u64, cpu: Option<f64>) -> Option<f64> {
        (units > 0).then_some(())?;
        cpu.map(|c| c * 1e6 / units as f64)
    }

    fn busy_pct(&self) -> Option<f64> {
        (self.wall_s > 0.0).then_some(())?;
        self.proxy_cpu_s.map(|c| 100.0 * c / self.wall_s)
    }
}

/// Measures what `fut` costs the processes involved.
struct Meter {
    procs: [Option<Watched>; 3],
}

impl Meter {
    fn new(t: &Target, mock: &Option<Watched>) -> Self {
        Meter {
            procs: [t.process.clone(), mock.clone(), Some(Watched::myself())],
        }
    }

    async fn run<F: std::future::Future>(&self, fut: F) -> (F::Output, Spent) {
        let before = CpuSample::take(&self.procs);
        let machine_before = procfs::machine_busy_seconds();
        let start = Instant::now();
        let out = fut.await;
        let wall = start.elapsed().as_secs_f64();
        let machine = procfs::machine_busy_seconds() - machine_before;
        let used = CpuSample::take(&self.procs).since(&before);
        let ours: f64 = used.iter().sum();
        let spent = Spent {
            wall_s: wall,
            proxy_cpu_s: self.procs[0].as_ref().map(|_| used[0]),
            mock_cpu_s: self.procs[1].as_ref().map(|_| used[1]),
            bench_cpu_s: used[2],
            other_cpu_pct: (100.0 * (machine - ours) / wall.max(1e-9)).max(0.0),
        };
        (out, spent)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
struct SmallResult {
    concurrency: usize,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    requests_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
    /// p50/p99 minus the direct path's.
    added_p50_ms: Option<f64>,
    added_p99_ms: Option<f64>,
    proxy_cpu_us_per_request: Option<f64>,
    proxy_busy_pct: Option<f64>,
    mock_cpu_us_per_request: Option<f64>,
    bench_cpu_us_per_request: Option<f64>,
    spent: Spent,
}

#[derive(Debug, Clone, Default, Serialize)]
struct StreamResult {
    concurrency: usize,
    tokens_per_stream: u32,
    pace_ms: u32,
    streams_ok: u64,
    errors: u64,
    /// Streams cut at the end of the window (not errors; streams are read to the end, so 0).
    cancelled: u64,
    first_error: Option<String>,
    tokens: u64,
    tokens_per_s: f64,
    ttft_p50_ms: Option<f64>,
    ttft_p99_ms: Option<f64>,
    /// First SSE event (OpenAI role chunk / Anthropic message_start).
    first_event_p50_ms: Option<f64>,
    first_event_p99_ms: Option<f64>,
    added_ttft_p50_ms: Option<f64>,
    added_ttft_p99_ms: Option<f64>,
    added_first_event_p50_ms: Option<f64>,
    added_first_event_p99_ms: Option<f64>,
    proxy_cpu_us_per_token: Option<f64>,
    proxy_busy_pct: Option<f64>,
    mock_cpu_us_per_token: Option<f64>,
    bench_cpu_us_per_token: Option<f64>,
    spent: Spent,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ClaudeResult {
    concurrency: usize,
    tokens_per_stream: u32,
    /// Size of the request body this path is sent (Anthropic, or its OpenAI conversion).
    body_bytes: usize,
    requests: u64,
    /// Failed requests, error events, streams without their final event or with fewer
    /// than `tokens_per_stream` tokens.
    errors: u64,
    first_error: Option<String>,
    requests_per_s: f64,
    tokens: u64,
    tokens_per_s: f64,
    ttft_p50_ms: Option<f64>,
    ttft_p99_ms: Option<f64>,
    /// From sending the request to the stream's final event.
    duration_p50_ms: Option<f64>,
    duration_p99_ms: Option<f64>,
    proxy_cpu_ms_per_request: Option<f64>,
    proxy_cpu_us_per_token: Option<f64>,
    proxy_busy_pct: Option<f64>,
    mock_cpu_ms_per_request: Option<f64>,
    bench_cpu_ms_per_request: Option<f64>,
    spent: Spent,
}

/// The `openai` workload: OpenAI Chat Completions sent to the path.
#[derive(Debug, Clone, Default, Serialize)]
struct OpenAiResult {
    /// Where the requests went (`/v1/chat/completions` on the path).
    url: String,
    model: String,
    /// Small non-streaming requests at `plan.concurrency` (the shape of `small64`).
    small64: SmallResult,
    /// Unpaced streams with `stream_options.include_usage` (the shape of `stream`); a stream
    /// without `[DONE]` or with fewer tokens than asked is an error.
    stream: StreamResult,
}

#[derive(Debug, Clone, Default, Serialize)]
struct HoldResult {
    streams: usize,
    tokens_per_stream: u32,
    pace_ms: u32,
    peak_open: i64,
    all_open_after_s: Option<f64>,
    errors: u64,
    first_error: Option<String>,
    completed_early: u64,
    rss_before_mb: Option<f64>,
    rss_peak_mb: Option<f64>,
    rss_after_mb: Option<f64>,
    /// Proxy CPU while all streams were open, as % of one core.
    steady_cpu_pct: Option<f64>,
    tokens: u64,
    /// Tokens delivered per second over the whole workload (ramp included); the mock paces
    /// `streams × 1000 / pace_ms` per second when every stream is open.
    tokens_per_s: f64,
    wall_s: f64,
    spent: Spent,
}

#[derive(Debug, Clone, Default, Serialize)]
struct TargetResult {
    name: String,
    url: String,
    protocol: &'static str,
    model: String,
    pid: Option<u32>,
    /// RSS once the path answered its first request, before any load.
    rss_idle_mb: Option<f64>,
    /// RSS at the end of the run.
    rss_end_mb: Option<f64>,
    small1: Option<SmallResult>,
    small64: Option<SmallResult>,
    stream: Option<StreamResult>,
    paced: Option<StreamResult>,
    claude: Option<ClaudeResult>,
    openai: Option<OpenAiResult>,
    hold: Option<HoldResult>,
}

#[derive(Debug, Serialize)]
struct Results {
    tool: &'static str,
    unix_time: u64,
    plan: Plan,
    labels: BTreeMap<String, String>,
    mock_pid: Option<u32>,
    targets: Vec<TargetResult>,
    duration_s: f64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn say(t: &Target, msg: String) {
    eprintln!("[bench] {:<10} {msg}", t.name);
}

async fn wait_ready(t: &Arc<Target>, timeout: Duration) -> anyhow::Result<()> {
    let body = t.body("Hello", 16, false);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Some(p) = &t.process {
            if !p.alive() {
                bail!("{}: process {} is gone", t.name, p.pid);
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), small_once(t, body.clone())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "{} at {} did not answer within {timeout:?}: {last}",
        t.name,
        t.base
    )
}

async fn run_small(
    t: &Arc<Target>,
    mock: &Option<Watched>,
    plan: &Plan,
    concurrency: usize,
    duration_s: f64,
) -> SmallResult {
    let body = t.body("Hello", 32, false);
    let op = {
        let (t, body) = (t.clone(), body.clone());
        move |_| {
            let (t, body) = (t.clone(), body.clone());
            async move { small_once(&t, body).await }
        }
    };
    let mut spec = LoopSpec {
        concurrency,
        duration: secs(plan.warmup_s),
        max_ops: u64::MAX,
        op_timeout: Duration::from_secs(30),
        cancel_at_deadline: false,
        stagger: Duration::ZERO,
    };
    let _ = closed_loop(&spec, op.clone()).await;
    spec.duration = secs(duration_s);
    spec.max_ops = 5_000_000;
    let (out, spent) = Meter::new(t, mock).run(closed_loop(&spec, op)).await;
    let n = out.ok.len() as u64;
    let lat = Samples::from_durations(out.ok);
    SmallResult {
        concurrency,
        requests: n,
        errors: out.errors,
        first_error: out.first_error,
        requests_per_s: n as f64 / out.wall.as_secs_f64().max(1e-9),
        p50_ms: lat.pct_ms(50.0),
        p99_ms: lat.pct_ms(99.0),
        mean_ms: lat.mean_ms(),
        added_p50_ms: None,
        added_p99_ms: None,
        proxy_cpu_us_per_request: spent.per(n, spent.proxy_cpu_s),
        proxy_busy_pct: spent.busy_pct(),
        mock_cpu_us_per_request: spent.per(n, spent.mock_cpu_s),
        bench_cpu_us_per_request: spent.per(n, Some(spent.bench_cpu_s)),
        spent,
    }
}

struct StreamShape {
    concurrency: usize,
    tokens: u32,
    pace_ms: u32,
    duration_s: f64,
    /// A stream with fewer than `tokens` tokens is an error (not only one without its final
    /// event).
    all_tokens: bool,
}

async fn run_streams(t: &Arc<Target>, mock: &Option<Watched>, shape: StreamShape) -> StreamResult {
    let text = if shape.pace_ms > 0 {
        format!(
            "[[mock:text:{}]] [[mock:pace:{}]]",
            shape.tokens, shape.pace_ms
        )
    } else {
        format!("[[mock:text:{}]]", shape.tokens)
    };
    let body = t.body(&text, shape.tokens + 16, true);
    let tokens = Arc::new(AtomicU64::new(0));
    let want = if shape.all_tokens {
        u64::from(shape.tokens)
    } else {
        0
    };
    let op = {
        let (t, body, tokens) = (t.clone(), body.clone(), tokens.clone());
        move |_| {
            let (t, body, tokens) = (t.clone(), body.clone(), tokens.clone());
            async move { at_least(stream_once(&t, body, &tokens, None).await?, want) }
        }
    };
    let per_stream = Duration::from_millis(u64::from(shape.tokens) * u64::from(shape.pace_ms));
    // Warm-up: one short stream per worker, read to the end. (Streams cut mid-way would
    // leave work behind in a proxy that does not pass the disconnect on, which would then be
    // billed to the measured window.)
    let warm_body = t.body("[[mock:text:20]]", 64, true);
    let warm_op = {
        let (t, tokens) = (t.clone(), tokens.clone());
        move |_| {
            let (t, body, tokens) = (t.clone(), warm_body.clone(), tokens.clone());
            async move { stream_once(&t, body, &tokens, None).await }
        }
    };
    let mut spec = LoopSpec {
        concurrency: shape.concurrency,
        duration: Duration::from_secs(60),
        max_ops: shape.concurrency as u64,
        op_timeout: Duration::from_secs(60) + per_stream * 3,
        cancel_at_deadline: false,
        stagger: Duration::ZERO,
    };
    let _ = closed_loop(&spec, warm_op).await;
    tokens.store(0, Ordering::SeqCst);
    spec.duration = secs(shape.duration_s);
    spec.max_ops = 1_000_000;
    // Paced streams all last about as long: spread their starts over one stream's length so
    // the 64 streams are at different points, as independent clients would be, instead of
    // all asking for their first token in the same millisecond.
    spec.stagger = per_stream;
    let (out, spent) = Meter::new(t, mock).run(closed_loop(&spec, op)).await;
    let n_tokens = tokens.load(Ordering::SeqCst);
    let ttft = Samples::from_durations(out.ok.iter().filter_map(|o| o.ttft));
    let ttfb = Samples::from_durations(out.ok.iter().filter_map(|o| o.ttfb));
    StreamResult {
        concurrency: shape.concurrency,
        tokens_per_stream: shape.tokens,
        pace_ms: shape.pace_ms,
        streams_ok: out.ok.len() as u64,
        errors: out.errors,
        cancelled: out.cancelled,
        first_error: out.first_error,
        tokens: n_tokens,
        tokens_per_s: n_tokens as f64 / spent.wall_s.max(1e-9),
        ttft_p50_ms: ttft.pct_ms(50.0),
        ttft_p99_ms: ttft.pct_ms(99.0),
        first_event_p50_ms: ttfb.pct_ms(50.0),
        first_event_p99_ms: ttfb.pct_ms(99.0),
        proxy_cpu_us_per_token: spent.per(n_tokens, spent.proxy_cpu_s),
        proxy_busy_pct: spent.busy_pct(),
        mock_cpu_us_per_token: spent.per(n_tokens, spent.mock_cpu_s),
        bench_cpu_us_per_token: spent.per(n_tokens, Some(spent.bench_cpu_s)),
        spent,
        ..Default::default()
    }
}

/// One Claude Code request per worker: its body (for this path) and headers.
type Requests = Arc<Vec<(Bytes, HeaderMap)>>;

/// Per worker, `cc` as sent to `t`, with the worker's session id.
fn claude_requests(t: &Target, cc: &ClaudeCode, sessions: &[String]) -> anyhow::Result<Requests> {
    let reqs = sessions
        .iter()
        .map(|s| cc.request(t.proto, &t.model, s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(reqs))
}

/// Closed-loop streams of the recorded Claude Code request; each worker is its own Claude
/// Code session (own session id), so session affinity plays no part.
async fn run_claude(
    t: &Arc<Target>,
    mock: &Option<Watched>,
    plan: &Plan,
    full: &ClaudeCode,
    warm: &ClaudeCode,
) -> anyhow::Result<ClaudeResult> {
    let sessions: Vec<String> = (0..plan.claude_concurrency)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let reqs = claude_requests(t, full, &sessions)?;
    let warm_reqs = claude_requests(t, warm, &sessions)?;
    let body_bytes = reqs[0].0.len();
    let want = u64::from(plan.claude_tokens);
    let tokens = Arc::new(AtomicU64::new(0));
    let op = |reqs: Requests, want: u64| {
        let (t, tokens) = (t.clone(), tokens.clone());
        move |worker: usize| {
            let (t, reqs, tokens) = (t.clone(), reqs.clone(), tokens.clone());
            async move {
                let (body, headers) = &reqs[worker];
                let out = stream_once_with(&t, body.clone(), headers, &tokens, None).await?;
                at_least(out, want)
            }
        }
    };
    // Warm-up: the same request (parsing, translation, connections) with a short reply, once
    // per worker, read to the end.
    let mut spec = LoopSpec {
        concurrency: plan.claude_concurrency,
        duration: Duration::from_secs(120),
        max_ops: plan.claude_concurrency as u64,
        op_timeout: Duration::from_secs(120),
        cancel_at_deadline: false,
        stagger: Duration::ZERO,
    };
    let _ = closed_loop(&spec, op(warm_reqs, 0)).await;
    tokens.store(0, Ordering::SeqCst);
    // Streams running at the deadline are read to their end (cutting one would leave a proxy
    // that does not pass the disconnect on working into the next window), so the window lasts
    // up to one stream longer than planned.
    spec.duration = secs(plan.claude_s);
    spec.max_ops = 1_000_000;
    let (out, spent) = Meter::new(t, mock)
        .run(closed_loop(&spec, op(reqs, want)))
        .await;
    let n = out.ok.len() as u64;
    let n_tokens = tokens.load(Ordering::SeqCst);
    let ttft = Samples::from_durations(out.ok.iter().filter_map(|o| o.ttft));
    let total = Samples::from_durations(out.ok.iter().map(|o| o.total));
    let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
    Ok(ClaudeResult {
        concurrency: plan.claude_concurrency,
        tokens_per_stream: plan.claude_tokens,
        body_bytes,
        requests: n,
        errors: out.errors,
        first_error: out.first_error,
        requests_per_s: n as f64 / spent.wall_s.max(1e-9),
        tokens: n_tokens,
        tokens_per_s: n_tokens as f64 / spent.wall_s.max(1e-9),
        ttft_p50_ms: ttft.pct_ms(50.0),
        ttft_p99_ms: ttft.pct_ms(99.0),
        duration_p50_ms: total.pct_ms(50.0),
        duration_p99_ms: total.pct_ms(99.0),
        proxy_cpu_ms_per_request: ms(spent.per(n, spent.proxy_cpu_s)),
        proxy_cpu_us_per_token: spent.per(n_tokens, spent.proxy_cpu_s),
        proxy_busy_pct: spent.busy_pct(),
        mock_cpu_ms_per_request: ms(spent.per(n, spent.mock_cpu_s)),
        bench_cpu_ms_per_request: ms(spent.per(n, Some(spent.bench_cpu_s))),
        spent,
    })
}

/// The `openai` workload on one path: `oai` is the path spoken to in OpenAI Chat Completions
/// (for `direct`, the same target as always).
async fn run_openai(oai: &Arc<Target>, mock: &Option<Watched>, plan: &Plan) -> OpenAiResult {
    let small64 = run_small(oai, mock, plan, plan.concurrency, plan.small64_s).await;
    say(
        oai,
        format!(
            "openai @{}: {:.0} req/s, p50 {} ms, p99 {} ms, proxy {} µs CPU/req, {} errors",
            plan.concurrency,
            small64.requests_per_s,
            report::opt(small64.p50_ms, 2),
            report::opt(small64.p99_ms, 2),
            report::opt(small64.proxy_cpu_us_per_request, 1),
            small64.errors
        ),
    );
    pause().await;
    let shape = StreamShape {
        concurrency: plan.stream_concurrency,
        tokens: plan.stream_tokens,
        pace_ms: 0,
        duration_s: plan.stream_s,
        all_tokens: true,
    };
    let stream = run_streams(oai, mock, shape).await;
    say(
        oai,
        format!(
            "openai stream: {:.0} tokens/s, proxy {} µs CPU/token, {} streams, {} errors",
            stream.tokens_per_s,
            report::opt(stream.proxy_cpu_us_per_token, 3),
            stream.streams_ok,
            stream.errors
        ),
    );
    OpenAiResult {
        url: oai.url().to_string(),
        model: oai.model.clone(),
        small64,
        stream,
    }
}

async fn run_hold(t: &Arc<Target>, mock: &Option<Watched>, plan: &Plan) -> HoldResult {
    let text = format!(
        "[[mock:text:{}]] [[mock:pace:{}]]",
        plan.hold_tokens, plan.hold_pace_ms
    );
    let body = t.body(&text, plan.hold_tokens + 16, true);
    let rss_before = t.process.as_ref().map(|p| mb(p.rss_bytes()));
    let spec = HoldSpec {
        streams: plan.hold_streams,
        deadline: secs(plan.hold_deadline_s),
        hold_for: secs(plan.hold_for_s),
        sample_every: Duration::from_millis(100),
    };
    let (out, spent) = Meter::new(t, mock)
        .run(hold_streams(t.clone(), body, &spec))
        .await;
    // Let the target notice the disconnects and free what the streams held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = t.process.as_ref().map(|p| mb(p.rss_bytes()));
    HoldResult {
        streams: plan.hold_streams,
        tokens_per_stream: plan.hold_tokens,
        pace_ms: plan.hold_pace_ms,
        peak_open: out.peak_open,
        all_open_after_s: out.all_open_after.map(|d| d.as_secs_f64()),
        errors: out.errors,
        first_error: out.first_error,
        completed_early: out.completed,
        rss_before_mb: rss_before,
        rss_peak_mb: out.peak_rss.map(mb),
        rss_after_mb: rss_after,
        steady_cpu_pct: out
            .steady_cpu
            .filter(|(_, w)| !w.is_zero())
            .and_then(|(c, w)| t.process.as_ref().map(|_| 100.0 * c / w.as_secs_f64())),
        tokens: out.tokens,
        tokens_per_s: out.tokens as f64 / out.wall.as_secs_f64().max(1e-9),
        wall_s: out.wall.as_secs_f64(),
        spent,
    }
}

fn sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// Fills the "added vs direct" fields from the first (direct) target.
fn fill_added(results: &mut [TargetResult]) {
    let Some((direct, rest)) = results.split_first_mut() else {
        return;
    };
    for r in rest {
        if let (Some(d), Some(x)) = (&direct.small1, &mut r.small1) {
            x.added_p50_ms = sub(x.p50_ms, d.p50_ms);
            x.added_p99_ms = sub(x.p99_ms, d.p99_ms);
        }
        if let (Some(d), Some(x)) = (&direct.small64, &mut r.small64) {
            x.added_p50_ms = sub(x.p50_ms, d.p50_ms);
            x.added_p99_ms = sub(x.p99_ms, d.p99_ms);
        }
        if let (Some(d), Some(x)) = (&direct.openai, &mut r.openai) {
            x.small64.added_p50_ms = sub(x.small64.p50_ms, d.small64.p50_ms);
            x.small64.added_p99_ms = sub(x.small64.p99_ms, d.small64.p99_ms);
        }
        if let (Some(d), Some(x)) = (&direct.paced, &mut r.paced) {
            x.added_ttft_p50_ms = sub(x.ttft_p50_ms, d.ttft_p50_ms);
            x.added_ttft_p99_ms = sub(x.ttft_p99_ms, d.ttft_p99_ms);
            x.added_first_event_p50_ms = sub(x.first_event_p50_ms, d.first_event_p50_ms);
            x.added_first_event_p99_ms = sub(x.first_event_p99_ms, d.first_event_p99_ms);
        }
    }
}

fn pause() -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs(1))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let plan = Plan::new(args.quick, args.concurrency, args.hold_streams);
    let workloads: Vec<&str> = args.workloads.split(',').map(str::trim).collect();
    for w in &workloads {
        if ![
            "small1", "small64", "stream", "paced", "claude", "openai", "hold",
        ]
        .contains(w)
        {
            bail!("unknown workload `{w}`");
        }
    }
    let wants = |w: &str| workloads.contains(&w);
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').context("--label takes key=value")?;
        labels.insert(k.to_string(), v.to_string());
    }
    let mock = args.mock_pid.map(|p| Watched::new(p, false));

    let mut targets = vec![Arc::new(Target::new(
        "direct",
        &args.direct,
        Proto::OpenAi,
        &args.direct_model,
        "bench",
        None,
    )?)];
    if let Some(url) = &args.switchyard {
        let proc_ = args.switchyard_pid.map(|p| Watched::new(p, true));
        targets.push(Arc::new(Target::new(
            "switchyard",
            url,
            Proto::Anthropic,
            &args.proxy_model,
            "bench",
            proc_,
        )?));
    }
    if let Some(url) = &args.floor {
        // Anthropic clients reach the mock's own `/v1/messages` through it: the same bytes
        // on the client side as through the proxy, none of the proxy's work in between.
        let proc_ = args.floor_pid.map(|p| Watched::new(p, true));
        targets.push(Arc::new(Target::new(
            "floor",
            url,
            Proto::Anthropic,
            &args.direct_model,
            "bench",
            proc_,
        )?));
    }
    if let Some(url) = &args.litellm {
        let proc_ = args.litellm_pid.map(|p| Watched::new(p, true));
        targets.push(Arc::new(Target::new(
            "litellm",
            url,
            Proto::Anthropic,
            &args.proxy_model,
            &args.litellm_key,
            proc_,
        )?));
    }

    let mut results: Vec<TargetResult> = Vec::new();
    for t in &targets {
        wait_ready(t, Duration::from_secs(args.ready_timeout_secs)).await?;
        results.push(TargetResult {
            name: t.name.clone(),
            url: t.base.clone(),
            protocol: match t.proto {
                Proto::OpenAi => "openai",
                Proto::Anthropic => "anthropic",
            },
            model: t.model.clone(),
            pid: t.process.as_ref().map(|p| p.pid),
            ..Default::default()
        });
    }
    // Idle: every path has answered one request (lazy initialisation done), no load yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (t, r) in targets.iter().zip(&mut results) {
        r.rss_idle_mb = t.process.as_ref().map(|p| mb(p.rss_bytes()));
        if let Some(m) = r.rss_idle_mb {
            say(t, format!("idle RSS {m:.1} MB"));
        }
    }

    if wants("small1") {
        for (t, r) in targets.iter().zip(&mut results) {
            let x = run_small(t, &mock, &plan, 1, plan.small1_s).await;
            say(
                t,
                format!(
                    "small @1: {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                    x.requests_per_s,
                    report::opt(x.p50_ms, 3),
                    report::opt(x.p99_ms, 3),
                    x.errors
                ),
            );
            r.small1 = Some(x);
            pause().await;
        }
    }
    if wants("small64") {
        for (t, r) in targets.iter().zip(&mut results) {
            let x = run_small(t, &mock, &plan, plan.concurrency, plan.small64_s).await;
            say(
                t,
                format!(
                    "small @{}: {:.0} req/s, p50 {} ms, p99 {} ms, proxy {} µs CPU/req, {} errors",
                    plan.concurrency,
                    x.requests_per_s,
                    report::opt(x.p50_ms, 2),
                    report::opt(x.p99_ms, 2),
                    report::opt(x.proxy_cpu_us_per_request, 1),
                    x.errors
                ),
            );
            r.small64 = Some(x);
            pause().await;
        }
    }
    if wants("stream") {
        for (t, r) in targets.iter().zip(&mut results) {
            let shape = StreamShape {
                concurrency: plan.stream_concurrency,
                tokens: plan.stream_tokens,
                pace_ms: 0,
                duration_s: plan.stream_s,
                all_tokens: false,
            };
            let x = run_streams(t, &mock, shape).await;
            say(
                t,
                format!(
                    "stream: {:.0} tokens/s, proxy {} µs CPU/token, {} streams, {} errors",
                    x.tokens_per_s,
                    report::opt(x.proxy_cpu_us_per_token, 3),
                    x.streams_ok,
                    x.errors
                ),
            );
            r.stream = Some(x);
            pause().await;
        }
    }
    if wants("paced") {
        for (t, r) in targets.iter().zip(&mut results) {
            let shape = StreamShape {
                concurrency: plan.concurrency,
                tokens: plan.paced_tokens,
                pace_ms: plan.paced_pace_ms,
                duration_s: plan.paced_s,
                all_tokens: false,
            };
            let x = run_streams(t, &mock, shape).await;
            say(
                t,
                format!(
                    "paced @{}: TTFT p50 {} ms, p99 {} ms, {} streams, {} errors",
                    plan.concurrency,
                    report::opt(x.ttft_p50_ms, 3),
                    report::opt(x.ttft_p99_ms, 3),
                    x.streams_ok,
                    x.errors
                ),
            );
            r.paced = Some(x);
            pause().await;
        }
    }
    if wants("claude") {
        let full = ClaudeCode::load(plan.claude_tokens)?;
        let warm = ClaudeCode::load(20)?;
        for (t, r) in targets.iter().zip(&mut results) {
            let x = run_claude(t, &mock, &plan, &full, &warm).await?;
            say(
                t,
                format!(
                    "claude @{}: {} requests, TTFT p50 {} ms, duration p50 {} ms, proxy {} ms CPU/req, {} errors",
                    x.concurrency,
                    x.requests,
                    report::opt(x.ttft_p50_ms, 1),
                    report::opt(x.duration_p50_ms, 0),
                    report::opt(x.proxy_cpu_ms_per_request, 2),
                    x.errors
                ),
            );
            r.claude = Some(x);
            pause().await;
        }
    }
    if wants("openai") {
        // Every path spoken to in OpenAI Chat Completions: `direct` already is; the proxies
        // get a target of their own for their `/v1/chat/completions` (same process, model
        // name and key, bearer auth).
        let oai_targets = targets
            .iter()
            .map(|t| match t.proto {
                Proto::OpenAi => Ok(t.clone()),
                Proto::Anthropic => t.speaking(Proto::OpenAi).map(Arc::new),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (t, r) in oai_targets.iter().zip(&mut results) {
            r.openai = Some(run_openai(t, &mock, &plan).await);
            pause().await;
        }
    }
    if wants("hold") {
        for (t, r) in targets.iter().zip(&mut results) {
            let x = run_hold(t, &mock, &plan).await;
            say(
                t,
                format!(
                    "hold: {} of {} streams open at peak{}, RSS peak {} MB, {} errors",
                    x.peak_open,
                    x.streams,
                    x.all_open_after_s
                        .map(|s| format!(" (all open after {s:.1} s)"))
                        .unwrap_or_default(),
                    report::opt(x.rss_peak_mb, 1),
                    x.errors
                ),
            );
            r.hold = Some(x);
            pause().await;
        }
    }
    for (t, r) in targets.iter().zip(&mut results) {
        r.rss_end_mb = t.process.as_ref().map(|p| mb(p.rss_bytes()));
    }
    fill_added(&mut results);

    let out = Results {
        tool: "switchyard-e2e bench",
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        plan,
        labels,
        mock_pid: args.mock_pid,
        targets: results,
        duration_s: started.elapsed().as_secs_f64(),
    };
    println!("{}", report::table(&out));
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&out)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("[bench] results written to {}", args.out.display());
    Ok(())
}
