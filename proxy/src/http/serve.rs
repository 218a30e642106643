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
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

/// Serves `app` on `listener` until `shutdown` completes; then closes the listener and
/// returns once every open connection has finished its in-flight requests.
///
/// A connection accepted before the listener closes gets its first request served, even when
/// that request has not arrived yet (within the head timeout): hyper-util's graceful shutdown
/// cancels a connection still reading its first bytes, which would lose a request a client
/// sent during the grace period. So each connection is told to close only once its first
/// request has started (it then finishes the request in flight and closes; an idle keep-alive
/// connection closes at once), and connections still waiting in the kernel's accept queue
/// when the listener closes are accepted and served too.
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
    let conns = Connections {
        builder: Arc::new(builder),
        app,
        head_timeout,
        stop: watch::channel(false),
        alive: mpsc::channel(1),
    };
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, _)) => conns.spawn(tcp),
            Err(e) => accept_error(e).await,
        }
    }
    // Connections the kernel completed before the listener closes would be reset with it:
    // they are taken from its queue with `accept(2)` itself, until it says there are no more
    // (tokio's `accept` would trust its cached readiness, which may predate them).
    match listener.into_std() {
        Ok(listener) => {
            while let Ok((tcp, _)) = listener.accept() {
                match tcp
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(tcp))
                {
                    Ok(tcp) => conns.spawn(tcp),
                    Err(e) => tracing::debug!(error = %e, "cannot serve a queued connection"),
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot drain the accept queue"),
    }
    conns.close().await;
}

/// The open connections: how to serve one, the shutdown signal they watch, and a channel
/// whose every sender is a live connection (its receiver ends when the last one has).
struct Connections {
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    head_timeout: Duration,
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
    alive: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

impl Connections {
    fn spawn(&self, tcp: TcpStream) {
        // A stream is many small writes (an event per token): with Nagle's algorithm each
        // waits for the client's (delayed, up to 40 ms) ACK of the one before.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
        let task = connection(
            tcp,
            self.builder.clone(),
            self.app.clone(),
            self.head_timeout,
            self.stop.1.clone(),
        );
        let alive = self.alive.0.clone();
        tokio::spawn(async move {
            task.await;
            drop(alive);
        });
    }

    /// Tells every connection to close after its requests, and waits until all have.
    async fn close(self) {
        let Connections {
            stop, mut alive, ..
        } = self;
        stop.0.send_replace(true);
        drop(alive.0);
        while alive.1.recv().await.is_some() {}
    }
}

/// One client connection, until it ends: dropped without an answer when no first request
/// starts within `head_timeout`; told to close gracefully on shutdown once a request started.
async fn connection(
    tcp: TcpStream,
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    head_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let started = Arc::new(AtomicBool::new(false));
    let first = Arc::new(Notify::new());
    let (noted, told) = (started.clone(), first.clone());
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        noted.store(true, Ordering::Release);
        told.notify_one();
        app.call(req)
    });
    let mut conn = pin!(builder.serve_connection(TokioIo::new(tcp), service));
    // hyper times HTTP/1 heads only once it knows the protocol (from the first bytes, which
    // it waits for untimed), and never HTTP/2 ones: the first request is timed here.
    let mut head = pin!(tokio::time::sleep(head_timeout));
    let (mut head_over, mut stopping, mut closing) = (false, false, false);
    loop {
        tokio::select! {
            result = conn.as_mut() => return log_end(result),
            () = &mut head, if !head_over => {
                head_over = true;
                if !started.load(Ordering::Acquire) {
                    return; // closed without an answer
                }
            }
            _ = stop.changed(), if !stopping => stopping = true,
            () = first.notified(), if stopping && !closing => {}
        }
        if stopping && !closing && started.load(Ordering::Acquire) {
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
    }
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
