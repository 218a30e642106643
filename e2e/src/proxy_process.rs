//! Runs the real `switchyard-proxy` binary for tests, on loopback ports it picks itself.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Path of the proxy binary, built once per test process. The whole workspace's binaries are
/// built, as `.ci/run` does: building one package alone resolves features differently and
/// would relink the binary back and forth between runs.
pub fn proxy_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(path) = std::env::var("SWITCHYARD_PROXY_BIN") {
                return Ok(PathBuf::from(path));
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "--workspace", "--bins"])
                .current_dir(&root)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err("building switchyard-proxy failed".into());
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"));
            Ok(target.join("debug/switchyard-proxy"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A running proxy; killed on drop. Its log lines are kept for assertions.
pub struct ProxyProcess {
    child: Child,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ProxyProcess {
    /// Starts the proxy with `args` plus loopback listeners on free ports. Blocks until it
    /// listens: call it from a multi-threaded runtime when a mock backend runs in-process, or
    /// the mock cannot answer the proxy's start-up discovery.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(proxy_binary()?);
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env(
                "SWITCHYARD_LOG",
                std::env::var("SWITCHYARD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning switchyard-proxy")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addrs) = parse_listening(&line) {
                    let _ = tx.send(addrs);
                }
                if std::env::var_os("SWITCHYARD_TEST_ECHO").is_some() {
                    eprintln!("[proxy] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((api, admin)) = rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Self {
                    child,
                    api,
                    admin,
                    logs,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "switchyard-proxy exited with {status}:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("switchyard-proxy did not start within 30 s");
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the proxy process in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status readable");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The Prometheus text of the admin listener.
    pub async fn metrics(&self) -> String {
        crate::testkit::http()
            .get(format!("{}/metrics", self.admin_url()))
            .send()
            .await
            .expect("admin listener answers")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until a log line contains `needle`: a stream's access line is written
    /// as it ends, a moment after the client has read its last byte.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        self.wait_for_log_lines(|l| l.contains(needle), 1, within) > 0
    }

    /// Waits (bounded) until `n` log lines satisfy `matches`, and returns how many do: a
    /// stream's access line may come after a non-stream's that was sent later.
    pub fn wait_for_log_lines(
        &self,
        matches: impl Fn(&str) -> bool,
        n: usize,
        within: Duration,
    ) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let count = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| matches(l))
                .count();
            if count >= n || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for exit.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("proxy did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `… switchyard-proxy listening api=127.0.0.1:X admin=127.0.0.1:Y …`
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("switchyard-proxy listening") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        let start = line.find(&format!("{name}="))? + name.len() + 1;
        line[start..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .parse()
            .ok()
    };
    Some((field("api")?, field("admin")?))
}
