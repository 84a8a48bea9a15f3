//! The scrape endpoint: `GET /metrics` over plain HTTP/1.1, one request per connection. Anyone
//! who can reach the port may connect, so a connection gets a few KiB and seconds to send its
//! request, only a few are served at once, and a bearer token can be required.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// Time a client has to send its request and take the reply.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more connections are closed at once.
const MAX_CONNECTIONS: usize = 8;

/// Who may scrape.
#[derive(Clone, Default)]
pub struct Access {
    /// `Authorization: Bearer <token>` required when set.
    pub token: Option<Arc<String>>,
}

/// Serves scrapes until `shutdown` turns true.
pub async fn serve(listener: TcpListener, access: Access, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let access = access.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(TIMEOUT, answer(stream, &access)).await.is_err() {
                tracing::debug!(%peer, "metrics: request timed out");
            }
            drop(slot);
        });
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Reads the request head; None when it is too long or the client left.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// What a request head gets: status line and body.
pub fn respond(head: &str, access: &Access) -> (&'static str, String) {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    if method != "GET" {
        return ("405 Method Not Allowed", "GET /metrics\n".into());
    }
    if path != "/metrics" {
        return ("404 Not Found", "GET /metrics\n".into());
    }
    if let Some(token) = &access.token {
        let given = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.trim().strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return ("401 Unauthorized", "a bearer token is required\n".into());
        }
    }
    ("200 OK", super::encode())
}

/// Compares without an early exit, so the time taken says nothing of where a guess differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn answer(mut stream: TcpStream, access: &Access) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let (status, body) = respond(&head, access);
    let content_type = if status.starts_with("200") {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("401") {
        reply.push_str("WWW-Authenticate: Bearer\r\n");
    }
    reply.push_str("\r\n");
    reply.push_str(&body);
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Binds and serves in the background; the bound address.
pub async fn start(addr: SocketAddr, access: Access, shutdown: watch::Receiver<bool>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, access, shutdown));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_with_the_token_if_one_is_set() {
        let open = Access::default();
        assert_eq!(respond("GET /metrics HTTP/1.1\r\n\r\n", &open).0, "200 OK");
        assert!(respond("GET /metrics HTTP/1.1\r\n\r\n", &open).1.contains("# EOF"));
        assert_eq!(
            respond("POST /metrics HTTP/1.1\r\n\r\n", &open).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond("GET / HTTP/1.1\r\n\r\n", &open).0, "404 Not Found");
        let locked = Access {
            token: Some(Arc::new("s3cret".into())),
        };
        assert_eq!(respond("GET /metrics HTTP/1.1\r\n\r\n", &locked).0, "401 Unauthorized");
        let wrong = "GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3creX\r\n\r\n";
        assert_eq!(respond(wrong, &locked).0, "401 Unauthorized");
        let right = "GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization: Bearer s3cret\r\n\r\n";
        assert_eq!(respond(right, &locked).0, "200 OK");
    }
}
