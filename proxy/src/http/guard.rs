//! What every API answer goes through: a handler's or a stream's panic becomes that
//! client's error (the process goes on), and every answer carries a `request-id`.

use crate::error::{ApiError, ErrorKind};
use crate::state::{new_id, InFlightSlot};
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{FutureExt, Stream, StreamExt};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The `request-id` header: Anthropic's name for it, read by Claude Code and the SDKs.
pub(crate) const REQUEST_ID: &str = "request-id";

/// The layers every API answer goes through: a handler's panic becomes that client's 500
/// `api_error` (the process and every other request go on), and every answer gets a
/// `request-id`.
pub(super) fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(axum::middleware::from_fn(catch_panic))
        .layer(axum::middleware::map_response(stamp_request_id))
}

/// A panicking handler (a bug) answers 500 `api_error` instead of dropping the connection.
/// Panics inside a stream body are caught by [`GuardedBody`].
async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            tracing::error!(panic = panic_text(&*panic), "request handler panicked");
            internal_error().into_response()
        }
    }
}

fn internal_error() -> ApiError {
    ApiError::new(
        ErrorKind::Api,
        "internal error in the gateway while handling this request",
    )
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-text panic)")
}

/// A stream body that holds its request's place under `maxInFlight` until it ends, and
/// ends with an `error` event (not a cut connection) if producing it panics.
pub(crate) struct GuardedBody {
    inner: BodyDataStream,
    _slot: InFlightSlot,
    done: bool,
}

impl GuardedBody {
    pub(crate) fn wrap(resp: Response, slot: InFlightSlot) -> Response {
        resp.map(|body| {
            Body::from_stream(GuardedBody {
                inner: body.into_data_stream(),
                _slot: slot,
                done: false,
            })
        })
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll_next_unpin(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                self.done = true;
                tracing::error!(panic = panic_text(&*panic), "stream body panicked");
                let mut out = Vec::new();
                crate::translate::stream::error_event(&mut out, &internal_error());
                Poll::Ready(Some(Ok(Bytes::from(out))))
            }
        }
    }
}

/// Gives an answer without a `request-id` (everything but `messages`, which sets the id of
/// its access line itself) a fresh one.
pub(super) async fn stamp_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key(REQUEST_ID) {
        if let Ok(v) = HeaderValue::from_str(&new_id("req")) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A panicking handler answers its own client 500 `api_error`; the server goes on.
    #[tokio::test]
    async fn a_handler_panic_is_that_clients_500() {
        async fn boom() -> &'static str {
            panic!("a bug in one request")
        }
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }));
        let url = serve(guarded(routes)).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = client.get(format!("{url}/boom")).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key(REQUEST_ID));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "api_error");
        let ok = client.get(format!("{url}/ok")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok");
    }

    /// A stream body that panics ends with an `error` event and frees its place.
    #[tokio::test]
    async fn a_stream_panic_ends_with_an_error_event() {
        let in_flight = Arc::new(AtomicUsize::new(1));
        let chunks =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a")), Ok(Bytes::new())])
                .map(|c| match c {
                    Ok(b) if b.is_empty() => panic!("a bug mid-stream"),
                    other => other,
                });
        let resp = Response::new(Body::from_stream(chunks));
        let resp = GuardedBody::wrap(resp, InFlightSlot(in_flight.clone()));
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with("a"), "{text}");
        assert!(
            text.contains("event: error") && text.contains("api_error"),
            "{text}"
        );
        assert_eq!(in_flight.load(Ordering::Acquire), 0);
    }
}
