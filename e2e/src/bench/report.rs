//! The human-readable table: one column per path, one row per figure, and the design target.

use crate::{Results, TargetResult};

/// `x` with `digits` decimals, or `—`.
pub fn opt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "—".to_string(),
    }
}

/// An integer with thousands separators.
fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == digits.len() % 3 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn pair(a: Option<f64>, b: Option<f64>, digits: usize) -> String {
    if a.is_none() && b.is_none() {
        return "—".into();
    }
    format!("{} / {}", opt(a, digits), opt(b, digits))
}

fn signed(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:+.digits$}"),
        _ => "—".into(),
    }
}

/// Scaled to a readable number of decimals.
fn auto(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => {
            let a = v.abs();
            if a >= 1000.0 {
                thousands(v)
            } else if a >= 100.0 {
                format!("{v:.0}")
            } else if a >= 10.0 {
                format!("{v:.1}")
            } else if a >= 1.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.3}")
            }
        }
        _ => "—".into(),
    }
}

enum Line {
    Section(String),
    Row {
        label: String,
        cells: Vec<String>,
        target: String,
    },
}

fn row(
    targets: &[TargetResult],
    label: impl Into<String>,
    target: &str,
    cell: impl Fn(&TargetResult) -> String,
) -> Line {
    Line::Row {
        label: label.into(),
        cells: targets.iter().map(cell).collect(),
        target: target.to_string(),
    }
}

pub fn table(r: &Results) -> String {
    let t = &r.targets;
    let p = &r.plan;
    let c = p.concurrency;
    let mut lines = vec![Line::Section(format!(
        "Small non-streaming requests (\"Hello\", max_tokens 32; {} s @1, {} s @{c})",
        p.small1_s, p.small64_s
    ))];
    lines.push(row(t, format!("requests/s @{c}"), "40,000/core", |x| {
        x.small64
            .as_ref()
            .map(|s| thousands(s.requests_per_s))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, format!("latency @{c} p50 / p99 ms"), "", |x| {
        x.small64
            .as_ref()
            .map(|s| pair(s.p50_ms, s.p99_ms, 2))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "latency @1 p50 / p99 ms", "", |x| {
        x.small1
            .as_ref()
            .map(|s| pair(s.p50_ms, s.p99_ms, 3))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "added latency @1 p50 / p99 ms", "", |x| {
        x.small1
            .as_ref()
            .filter(|s| s.added_p50_ms.is_some())
            .map(|s| {
                format!(
                    "{} / {}",
                    signed(s.added_p50_ms, 3),
                    signed(s.added_p99_ms, 3)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, format!("proxy CPU µs/request @{c}"), "< 20", |x| {
        auto(x.small64.as_ref().and_then(|s| s.proxy_cpu_us_per_request))
    }));
    lines.push(row(t, format!("proxy core busy @{c} %"), "", |x| {
        opt(x.small64.as_ref().and_then(|s| s.proxy_busy_pct), 0)
    }));
    lines.push(row(t, "req/s per proxy core (1 / CPU)", "40,000", |x| {
        auto(
            x.small64
                .as_ref()
                .and_then(|s| s.proxy_cpu_us_per_request)
                .filter(|&v| v > 0.0)
                .map(|v| 1e6 / v),
        )
    }));
    lines.push(row(t, "mock CPU µs/request (load side)", "", |x| {
        auto(x.small64.as_ref().and_then(|s| s.mock_cpu_us_per_request))
    }));
    lines.push(row(t, "bench CPU µs/request (load side)", "", |x| {
        auto(x.small64.as_ref().and_then(|s| s.bench_cpu_us_per_request))
    }));

    lines.push(Line::Section(format!(
        "Streaming ({} streams × {} tokens, unpaced; {} s)",
        p.stream_concurrency, p.stream_tokens, p.stream_s
    )));
    lines.push(row(t, "tokens/s", "", |x| {
        auto(x.stream.as_ref().map(|s| s.tokens_per_s))
    }));
    lines.push(row(t, "proxy CPU µs/streamed token", "< 0.3", |x| {
        auto(x.stream.as_ref().and_then(|s| s.proxy_cpu_us_per_token))
    }));
    lines.push(row(t, "proxy core busy %", "", |x| {
        opt(x.stream.as_ref().and_then(|s| s.proxy_busy_pct), 0)
    }));
    lines.push(row(t, "mock + bench CPU µs/token", "", |x| {
        x.stream
            .as_ref()
            .map(|s| {
                format!(
                    "{} + {}",
                    auto(s.mock_cpu_us_per_token),
                    auto(s.bench_cpu_us_per_token)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));

    lines.push(Line::Section(format!(
        "{c} concurrent paced streams ({} tokens, {} ms apart; {} s)",
        p.paced_tokens, p.paced_pace_ms, p.paced_s
    )));
    lines.push(row(t, "TTFT p50 / p99 ms", "", |x| {
        x.paced
            .as_ref()
            .map(|s| pair(s.ttft_p50_ms, s.ttft_p99_ms, 3))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "added TTFT p50 / p99 ms", "p99 < 0.5", |x| {
        x.paced
            .as_ref()
            .filter(|s| s.added_ttft_p50_ms.is_some())
            .map(|s| {
                format!(
                    "{} / {}",
                    signed(s.added_ttft_p50_ms, 3),
                    signed(s.added_ttft_p99_ms, 3)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "first event p50 / p99 ms", "", |x| {
        x.paced
            .as_ref()
            .map(|s| pair(s.first_event_p50_ms, s.first_event_p99_ms, 3))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "streams completed", "", |x| {
        x.paced
            .as_ref()
            .map(|s| thousands(s.streams_ok as f64))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "proxy CPU µs/token (paced)", "", |x| {
        auto(x.paced.as_ref().and_then(|s| s.proxy_cpu_us_per_token))
    }));
    lines.push(row(t, "mock + bench CPU µs/token (paced)", "", |x| {
        x.paced
            .as_ref()
            .map(|s| {
                format!(
                    "{} + {}",
                    auto(s.mock_cpu_us_per_token),
                    auto(s.bench_cpu_us_per_token)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));

    lines.push(Line::Section(format!(
        "Claude Code request (text1 fixture; {} closed-loop streams × {} tokens, unpaced; {} s)",
        p.claude_concurrency,
        thousands(f64::from(p.claude_tokens)),
        p.claude_s
    )));
    lines.push(row(t, "request body KB", "", |x| {
        auto(x.claude.as_ref().map(|s| s.body_bytes as f64 / 1024.0))
    }));
    lines.push(row(t, "requests completed", "", |x| {
        x.claude
            .as_ref()
            .map(|s| thousands(s.requests as f64))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "TTFT p50 / p99 ms", "", |x| {
        x.claude
            .as_ref()
            .map(|s| pair(s.ttft_p50_ms, s.ttft_p99_ms, 2))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "duration p50 / p99 ms", "", |x| {
        x.claude
            .as_ref()
            .map(|s| pair(s.duration_p50_ms, s.duration_p99_ms, 0))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "tokens/s", "", |x| {
        auto(x.claude.as_ref().map(|s| s.tokens_per_s))
    }));
    lines.push(row(t, "proxy CPU ms/request", "", |x| {
        auto(x.claude.as_ref().and_then(|s| s.proxy_cpu_ms_per_request))
    }));
    lines.push(row(t, "proxy core busy %", "", |x| {
        opt(x.claude.as_ref().and_then(|s| s.proxy_busy_pct), 0)
    }));
    lines.push(row(t, "mock + bench CPU ms/request", "", |x| {
        x.claude
            .as_ref()
            .map(|s| {
                format!(
                    "{} + {}",
                    auto(s.mock_cpu_ms_per_request),
                    auto(s.bench_cpu_ms_per_request)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));

    lines.push(Line::Section(format!(
        "OpenAI Chat Completions in (/v1/chat/completions on every path; \"Hello\" {} s @{c}; \
         {} streams × {} tokens, unpaced, include_usage, {} s)",
        p.small64_s, p.stream_concurrency, p.stream_tokens, p.stream_s
    )));
    lines.push(row(t, format!("requests/s @{c}"), "40,000/core", |x| {
        x.openai
            .as_ref()
            .map(|o| thousands(o.small64.requests_per_s))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, format!("latency @{c} p50 / p99 ms"), "", |x| {
        x.openai
            .as_ref()
            .map(|o| pair(o.small64.p50_ms, o.small64.p99_ms, 2))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, format!("proxy CPU µs/request @{c}"), "< 20", |x| {
        auto(
            x.openai
                .as_ref()
                .and_then(|o| o.small64.proxy_cpu_us_per_request),
        )
    }));
    lines.push(row(t, format!("proxy core busy @{c} %"), "", |x| {
        opt(x.openai.as_ref().and_then(|o| o.small64.proxy_busy_pct), 0)
    }));
    lines.push(row(t, "mock + bench CPU µs/request", "", |x| {
        x.openai
            .as_ref()
            .map(|o| {
                format!(
                    "{} + {}",
                    auto(o.small64.mock_cpu_us_per_request),
                    auto(o.small64.bench_cpu_us_per_request)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "stream tokens/s", "", |x| {
        auto(x.openai.as_ref().map(|o| o.stream.tokens_per_s))
    }));
    lines.push(row(t, "proxy CPU µs/streamed token", "< 0.3", |x| {
        auto(
            x.openai
                .as_ref()
                .and_then(|o| o.stream.proxy_cpu_us_per_token),
        )
    }));
    lines.push(row(t, "proxy core busy (stream) %", "", |x| {
        opt(x.openai.as_ref().and_then(|o| o.stream.proxy_busy_pct), 0)
    }));
    lines.push(row(t, "mock + bench CPU µs/token", "", |x| {
        x.openai
            .as_ref()
            .map(|o| {
                format!(
                    "{} + {}",
                    auto(o.stream.mock_cpu_us_per_token),
                    auto(o.stream.bench_cpu_us_per_token)
                )
            })
            .unwrap_or_else(|| "—".into())
    }));

    lines.push(Line::Section(format!(
        "Memory and open streams ({} streams, {} tokens {} ms apart)",
        p.hold_streams, p.hold_tokens, p.hold_pace_ms
    )));
    lines.push(row(t, "RSS idle MB", "", |x| auto(x.rss_idle_mb)));
    lines.push(row(t, "streams open at peak", "1,000", |x| {
        x.hold
            .as_ref()
            .map(|h| format!("{} / {}", h.peak_open, h.streams))
            .unwrap_or_else(|| "—".into())
    }));
    lines.push(row(t, "all open after s", "", |x| {
        opt(x.hold.as_ref().and_then(|h| h.all_open_after_s), 2)
    }));
    lines.push(row(t, "RSS with streams open MB", "< 30", |x| {
        auto(x.hold.as_ref().and_then(|h| h.rss_peak_mb))
    }));
    lines.push(row(t, "RSS after streams closed MB", "", |x| {
        auto(x.hold.as_ref().and_then(|h| h.rss_after_mb))
    }));
    lines.push(row(
        t,
        format!(
            "tokens/s delivered (paced: {})",
            thousands(p.hold_streams as f64 * 1000.0 / f64::from(p.hold_pace_ms.max(1)))
        ),
        "",
        |x| auto(x.hold.as_ref().map(|h| h.tokens_per_s)),
    ));
    lines.push(row(t, "proxy CPU % with streams open", "", |x| {
        opt(x.hold.as_ref().and_then(|h| h.steady_cpu_pct), 1)
    }));

    lines.push(Line::Section(
        "Errors (small@1 / small@64 / stream / paced / claude / hold / openai@64 / openai stream)"
            .into(),
    ));
    lines.push(row(t, "errors", "0", |x| {
        let e = [
            x.small1.as_ref().map(|s| s.errors),
            x.small64.as_ref().map(|s| s.errors),
            x.stream.as_ref().map(|s| s.errors),
            x.paced.as_ref().map(|s| s.errors),
            x.claude.as_ref().map(|s| s.errors),
            x.hold.as_ref().map(|s| s.errors),
            x.openai.as_ref().map(|o| o.small64.errors),
            x.openai.as_ref().map(|o| o.stream.errors),
        ];
        e.iter()
            .map(|v| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into()))
            .collect::<Vec<_>>()
            .join("/")
    }));

    lines.push(row(t, "other processes' CPU, worst window %", "~0", |x| {
        let windows = [
            x.small1.as_ref().map(|s| s.spent.other_cpu_pct),
            x.small64.as_ref().map(|s| s.spent.other_cpu_pct),
            x.stream.as_ref().map(|s| s.spent.other_cpu_pct),
            x.paced.as_ref().map(|s| s.spent.other_cpu_pct),
            x.claude.as_ref().map(|s| s.spent.other_cpu_pct),
            x.hold.as_ref().map(|s| s.spent.other_cpu_pct),
            x.openai.as_ref().map(|o| o.small64.spent.other_cpu_pct),
            x.openai.as_ref().map(|o| o.stream.spent.other_cpu_pct),
        ];
        opt(windows.into_iter().flatten().reduce(f64::max), 0)
    }));

    render(r, &lines)
}

fn render(r: &Results, lines: &[Line]) -> String {
    let names: Vec<&str> = r.targets.iter().map(|t| t.name.as_str()).collect();
    let label_w = lines
        .iter()
        .filter_map(|l| match l {
            Line::Row { label, .. } => Some(label.chars().count()),
            Line::Section(_) => None,
        })
        .max()
        .unwrap_or(10)
        + 2;
    let mut col_w: Vec<usize> = names.iter().map(|n| n.len()).collect();
    let mut target_w = "target".len();
    for l in lines {
        if let Line::Row { cells, target, .. } = l {
            for (w, c) in col_w.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
            target_w = target_w.max(target.chars().count());
        }
    }
    let pad =
        |s: &str, w: usize| format!("{}{}", " ".repeat(w.saturating_sub(s.chars().count())), s);
    let padr =
        |s: &str, w: usize| format!("{}{}", s, " ".repeat(w.saturating_sub(s.chars().count())));
    let total = label_w + col_w.iter().map(|w| w + 3).sum::<usize>() + target_w + 3;
    let mut out = String::new();
    out.push_str(&format!(
        "Switchyard benchmark ({} run, {:.0} s)",
        r.plan.mode, r.duration_s
    ));
    for (k, v) in &r.labels {
        out.push_str(&format!("\n  {k}: {v}"));
    }
    out.push('\n');
    out.push_str(&padr("", label_w));
    for (n, w) in names.iter().zip(&col_w) {
        out.push_str(" | ");
        out.push_str(&pad(n, *w));
    }
    out.push_str(" | ");
    out.push_str(&padr("target", target_w));
    out.push('\n');
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for l in lines {
        match l {
            Line::Section(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Line::Row {
                label,
                cells,
                target,
            } => {
                out.push_str(&padr(&format!("  {label}"), label_w));
                for (c, w) in cells.iter().zip(&col_w) {
                    out.push_str(" | ");
                    out.push_str(&pad(c, *w));
                }
                out.push_str(" | ");
                out.push_str(&padr(target, target_w));
                out.push('\n');
            }
        }
    }
    let mut notes = Vec::new();
    for x in &r.targets {
        let errs = [
            (
                "small@1",
                x.small1.as_ref().and_then(|s| s.first_error.clone()),
            ),
            (
                "small@64",
                x.small64.as_ref().and_then(|s| s.first_error.clone()),
            ),
            (
                "stream",
                x.stream.as_ref().and_then(|s| s.first_error.clone()),
            ),
            (
                "paced",
                x.paced.as_ref().and_then(|s| s.first_error.clone()),
            ),
            (
                "claude",
                x.claude.as_ref().and_then(|s| s.first_error.clone()),
            ),
            ("hold", x.hold.as_ref().and_then(|s| s.first_error.clone())),
            (
                "openai@64",
                x.openai
                    .as_ref()
                    .and_then(|o| o.small64.first_error.clone()),
            ),
            (
                "openai stream",
                x.openai.as_ref().and_then(|o| o.stream.first_error.clone()),
            ),
        ];
        for (w, e) in errs {
            if let Some(e) = e {
                notes.push(format!("  {} {w}: first error: {e}", x.name));
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nErrors seen:\n");
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(33806.4), "33,806");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(100.0), "100");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(opt(None, 2), "—");
        assert_eq!(signed(Some(0.25), 3), "+0.250");
        assert_eq!(auto(Some(0.1234)), "0.123");
    }
}
