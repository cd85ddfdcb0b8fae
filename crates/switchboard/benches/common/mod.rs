//! What the switchboard benches share: the server process, WebSocket
//! clients with dummy SDP, percentiles. Each bench uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A dummy Opus SDP offer/answer: the switchboard relays it untouched.
pub const SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n";

/// The value at quantile `p` (0–1) of sorted samples; NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `switchboard` binary serving `data_dir` on a free loopback
/// port with `extra` arguments after `serve`, without the limits a load
/// from one IP would hit; returns the process and its base URL.
///
/// # Errors
/// When it cannot be started or does not print its address.
pub fn start_switchboard(
    data_dir: &Path,
    before_serve: &[&str],
    extra: &[&str],
) -> anyhow::Result<(KillOnDrop, String)> {
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(before_serve)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--frames-per-sec",
            "10000",
            // Every client comes from 127.0.0.1: measure the server, not
            // admission.
            "--ws-admissions-per-sec",
            "1000000",
            "--ws-admissions-per-ip-per-sec",
            "1000000",
        ])
        .args(extra)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    // Stopped on every way out, errors included.
    let mut server = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("piped")).read_line(&mut line)?;
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((server, base))
}

/// Connects and says `hello` with `token` as endpoint `endpoint`; returns
/// once welcomed.
///
/// # Errors
/// A refused hello, a closed socket, no frame within 60 s.
pub async fn connect(url: &str, token: &str, endpoint: &str) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let hello =
        json!({"type": "hello", "token": token, "device_id": endpoint, "device_name": "bench"});
    ws.send(Message::text(hello.to_string())).await?;
    loop {
        let v = next_json(&mut ws).await?;
        if v["type"] == "welcome" {
            return Ok(ws);
        }
        if v["type"] == "error" {
            anyhow::bail!("hello refused: {v}");
        }
    }
}

/// The next text frame as JSON.
///
/// # Errors
/// A closed socket, no frame within 60 s, a frame that is not JSON.
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no frame within 60 s"))?
            .ok_or_else(|| anyhow::anyhow!("socket closed"))??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(&t)?);
        }
    }
}

/// Sends a JSON frame.
///
/// # Errors
/// When the socket is gone.
pub async fn send(ws: &mut Ws, v: Value) -> anyhow::Result<()> {
    Ok(ws.send(Message::text(v.to_string())).await?)
}
