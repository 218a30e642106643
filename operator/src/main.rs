//! `switchyard-operator`: leader election, then the backend controller and the snapshot
//! publisher, with `/metrics` and `/healthz` on the side.

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_operator::controller::proxy::HttpProbe;
use switchyard_operator::controller::{admin_key, backend, snapshot, Context, Settings};
use switchyard_operator::leader::{self, LeaseLock};
use switchyard_operator::metrics::{self, Metrics};
use tokio::sync::{oneshot, watch};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Namespace of the snapshot ConfigMap, the credentials Secret and the proxy pods.
    #[arg(long, env = "POD_NAMESPACE")]
    snapshot_namespace: String,
    /// Reconcile resources of this namespace only (all namespaces when absent).
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Namespace of the `switchyard-operator` Lease (default: the snapshot namespace).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Port of each proxy's admin endpoint (`GET /config`).
    #[arg(long, default_value_t = 4001)]
    proxy_admin_port: u16,
    /// Secret in the snapshot namespace whose `keys.yaml` lists the client keys the proxies
    /// require (the snapshot's `keys` format: name, sha256, routes, limits). Absent: the
    /// proxies ask for no key.
    #[arg(long)]
    client_keys_secret: Option<String>,
    /// Secret in the snapshot namespace to create, with a random `admin-key`, when it does not
    /// exist: the proxies' admin API key (the chart's default). Never updated once there.
    #[arg(long)]
    admin_key_secret: Option<String>,
    /// Logs as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_runtime=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }

    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    let server = {
        let (addr, metrics, stop) = (args.metrics_listen, metrics.clone(), when(stop_rx.clone()));
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, metrics, stop).await {
                tracing::error!(%addr, error = %e, "metrics server failed");
            }
        })
    };

    // Every replica, leader or not: creating is idempotent, and the proxies cannot start
    // before the Secret exists.
    if let Some(name) = args.admin_key_secret.clone() {
        tokio::spawn(admin_key::run(
            client.clone(),
            args.snapshot_namespace.clone(),
            name,
        ));
    }

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("switchyard-operator-{}", std::process::id()))
    });
    let lease_ns = args
        .leader_election_namespace
        .clone()
        .unwrap_or_else(|| args.snapshot_namespace.clone());
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), &lease_ns);
    let duration = Duration::from_secs(args.lease_duration.max(3));
    let (leader_tx, mut leader_rx) = watch::channel(false);
    let election = tokio::spawn(leader::run(
        LeaseLock::new(lease_api.clone(), identity.clone(), duration),
        leader_tx,
        stop_rx.clone(),
    ));
    tracing::info!(%identity, namespace = %lease_ns, lease = leader::LEASE_NAME, "waiting for leadership");
    let mut stop_wait = stop_rx.clone();
    tokio::select! {
        _ = leader_rx.wait_for(|l| *l) => {}
        _ = stop_wait.wait_for(|s| *s) => {
            election.await.ok();
            return Ok(());
        }
    }
    metrics.leader.set(1);

    let leader_worker_sets = kube::discovery::group(&client, "leaderworkerset.x-k8s.io")
        .await
        .is_ok();
    if !leader_worker_sets {
        tracing::info!("LeaderWorkerSet API not installed: multi-node backends will report it");
    }
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Settings {
            snapshot_namespace: args.snapshot_namespace.clone(),
            watch_namespace: args.watch_namespace.clone(),
            proxy_admin_port: args.proxy_admin_port,
            client_keys_secret: args.client_keys_secret.clone(),
        },
        Arc::new(HttpProbe::default()),
    ));

    // Controllers stop on SIGTERM or when leadership is lost.
    let (halt_tx, halt_rx) = watch::channel(false);
    {
        let (mut stop, mut leader) = (stop_rx.clone(), leader_rx.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = leader.wait_for(|l| !*l) => {}
            }
            halt_tx.send_replace(true);
        });
    }
    tokio::join!(
        backend::run(ctx.clone(), leader_worker_sets, when(halt_rx.clone())),
        snapshot::run(ctx.clone(), when(halt_rx.clone())),
    );
    metrics.leader.set(0);

    let lost = !*leader_rx.borrow() && !*stop_rx.borrow();
    election.abort();
    if lost {
        // Another replica leads now; restart to rejoin the election with fresh state.
        anyhow::bail!("leadership lost");
    }
    if let Err(e) = LeaseLock::new(lease_api, identity, duration)
        .release()
        .await
    {
        tracing::warn!(error = %e, "could not release the lease");
    }
    server.await.ok();
    Ok(())
}

/// A future that completes once `rx` turns true. `Send + Sync` (what
/// `Controller::graceful_shutdown_on` asks), hence the oneshot in between.
fn when(mut rx: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (tx, done) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = rx.wait_for(|v| *v).await;
        let _ = tx.send(());
    });
    async move {
        let _ = done.await;
    }
}

async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok();
}
