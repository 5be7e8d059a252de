//! A minimal keep-alive HTTP/1.1 client: one TCP connection per `Conn`,
//! requests sent one after another on it (closed-loop load).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    host: String,
    auth: String,
}

impl Conn {
    pub async fn open(addr: &str, key: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            host: addr.to_owned(),
            auth: format!("Bearer {key}"),
        })
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        self.request_as(method, path, body, "application/json")
            .await
    }

    /// A request whose body is of `content_type`.
    pub async fn request_as(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> Result<(StatusCode, Bytes)> {
        self.send.ready().await?;
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", &self.auth);
        if body.is_some() {
            b = b.header("content-type", content_type);
        }
        let req = b.body(Full::new(body.unwrap_or_default()))?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        self.request(Method::GET, path, None).await
    }

    /// POST/PUT/PATCH JSON and insist on a 2xx answer.
    pub async fn send_ok(&mut self, method: Method, path: &str, body: Bytes) -> Result<Bytes> {
        let (status, bytes) = self.request(method.clone(), path, Some(body)).await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        );
        Ok(bytes)
    }
}
