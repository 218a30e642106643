//! The client API listener: hyper-util's HTTP/1 + HTTP/2 connection builder, run here
//! rather than through `axum::serve` because that gives hyper no timer, so hyper's
//! `header_read_timeout` never ran and a client that opened a connection and sent nothing (or
//! a byte now and then, never finishing its headers) held it for ever (slow loris).

use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` completes; then closes the listener and
/// returns once every open connection has finished its in-flight requests (each is asked to
/// close after its current request; idle ones close at once).
///
/// Every request head must arrive within `head_timeout`: the first from the connection's
/// accept (whatever the protocol), later ones on an HTTP/1 connection from the end of the
/// previous answer (hyper's `header_read_timeout`: an idle keep-alive connection is closed
/// after this time too).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        // A stream is many small writes (an event per token): with Nagle's algorithm each
        // waits for the client's (delayed, up to 40 ms) ACK of the one before.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
        let watcher = graceful.watcher();
        let (builder, app) = (builder.clone(), app.clone());
        tokio::spawn(async move {
            let started = Arc::new(AtomicBool::new(false));
            let noted = started.clone();
            let app = TowerToHyperService::new(app);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                noted.store(true, Ordering::Release);
                app.call(req)
            });
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let mut conn = pin!(watcher.watch(conn));
            // hyper times HTTP/1 heads only once it knows the protocol (from the first
            // bytes, which it waits for untimed), and never HTTP/2 ones: the first request
            // is timed here, from the connection.
            tokio::select! {
                result = conn.as_mut() => return log_end(result),
                () = tokio::time::sleep(head_timeout) => {}
            }
            if started.load(Ordering::Acquire) {
                log_end(conn.await);
            } // else the connection is dropped: closed without an answer.
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// As `axum::serve`: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors, say) is logged and retried after a second, when connections
/// may have closed.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a client connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
