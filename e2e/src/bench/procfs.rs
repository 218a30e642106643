//! CPU time and resident memory of the processes under test, read from `/proc`.
//!
//! A process is measured together with its descendants (LiteLLM may fork helpers; the Rust
//! servers never do), so a figure is "what this server costs the machine".  CPU time is
//! `utime + stime` from `/proc/PID/stat`, in clock ticks (`sysconf(_SC_CLK_TCK)`, 100 Hz on
//! Linux): a 10 ms resolution, which is why every measured window lasts seconds.  Memory is
//! `VmRSS` from `/proc/PID/status`.

use std::collections::{HashMap, HashSet};
use std::fs;

/// Clock ticks per second of the `utime`/`stime` fields.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `(ppid, utime + stime in ticks)` of one process, `None` if it is gone.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `pid` and all its descendants that are alive now.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut seen: HashSet<u32> = HashSet::from([pid]);
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            for &k in kids {
                if seen.insert(k) {
                    out.push(k);
                }
            }
        }
        i += 1;
    }
    out
}

/// A process (tree) whose cost is measured.
#[derive(Debug, Clone)]
pub struct Watched {
    pub pid: u32,
    /// Descendants are looked up again on every sample when set.
    pub with_children: bool,
}

impl Watched {
    pub fn new(pid: u32, with_children: bool) -> Self {
        Watched { pid, with_children }
    }

    /// This process (the bench itself).
    pub fn myself() -> Self {
        Watched {
            pid: std::process::id(),
            with_children: false,
        }
    }

    fn pids(&self) -> Vec<u32> {
        if self.with_children {
            tree(self.pid)
        } else {
            vec![self.pid]
        }
    }

    /// Is the process still running?
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some()
    }

    /// CPU seconds (user + system) consumed so far.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks: u64 = self
            .pids()
            .into_iter()
            .filter_map(|p| stat(p).map(|s| s.1))
            .sum();
        ticks as f64 / clock_ticks()
    }

    /// Resident set size in bytes (summed over the tree; shared pages counted once per process).
    pub fn rss_bytes(&self) -> u64 {
        self.pids().into_iter().filter_map(rss_of).sum()
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Busy CPU seconds of the whole machine so far (all CPUs; everything but idle and iowait),
/// from the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal guest guest_nice
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
        .map(|(_, v)| v)
        .sum();
    busy as f64 / clock_ticks()
}

/// CPU seconds of several processes, sampled together.
#[derive(Debug, Clone, Default)]
pub struct CpuSample(pub Vec<f64>);

impl CpuSample {
    pub fn take(procs: &[Option<Watched>]) -> Self {
        CpuSample(
            procs
                .iter()
                .map(|p| p.as_ref().map(Watched::cpu_seconds).unwrap_or(0.0))
                .collect(),
        )
    }

    /// Seconds used by each process since `before` (never negative).
    pub fn since(&self, before: &CpuSample) -> Vec<f64> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|(a, b)| (a - b).max(0.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = Watched::myself();
        assert!(me.alive());
        assert!(me.rss_bytes() > 0);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(me.cpu_seconds() >= 0.0);
        assert!(tree(me.pid).contains(&me.pid));
    }
}
