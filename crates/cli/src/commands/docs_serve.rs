//! `strata docs serve`: the docs site (`index.html`, `manifest.json`, `catalog.json` of the
//! target folder) over HTTP, read-only, until Ctrl-C. A small HTTP/1.1 file server: GET and
//! HEAD of the folder's files, nothing outside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::GlobalArgs;
use crate::report::Console;

/// Serve `dir` on `host:port` until Ctrl-C.
pub async fn serve(global: &GlobalArgs, dir: &Path, host: &str, port: u16) -> Result<ExitCode> {
    if !dir.join("index.html").is_file() {
        anyhow::bail!(
            "{} has no docs site yet\n  hint: run `strata docs generate` first",
            dir.display()
        );
    }
    let root = std::fs::canonicalize(dir)?;
    let listener = TcpListener::bind((host, port)).await.with_context(|| {
        format!("cannot listen on {host}:{port} (is the port in use? choose another with --port)")
    })?;
    let console = Console::new(global);
    console.info(&format!(
        "Serving the docs of {} at http://{host}:{port}/ (Ctrl-C to stop)",
        root.display()
    ));
    // One Ctrl-C listener for the whole loop: one made per iteration misses a signal that
    // arrives while a connection is being accepted.
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let root = root.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &root).await {
                        tracing::debug!("docs serve: {e}");
                    }
                });
            }
            _ = &mut stop => {
                console.info("Stopped serving the docs");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Answer one request.
async fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // The request head, up to a blank line (bodies are not read: only GET and HEAD).
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (status, kind, body) = match method {
        "GET" | "HEAD" => match file_for(root, target) {
            Some(path) => match tokio::fs::read(&path).await {
                Ok(bytes) => ("200 OK", content_type(&path), bytes),
                Err(_) => not_found(),
            },
            None => not_found(),
        },
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"only GET and HEAD\n".to_vec(),
        ),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(&body).await?;
    }
    stream.shutdown().await
}

fn not_found() -> (&'static str, &'static str, Vec<u8>) {
    (
        "404 Not Found",
        "text/plain; charset=utf-8",
        b"not found\n".to_vec(),
    )
}

/// The file a request path names inside `root` (`/` is index.html); never one outside it.
fn file_for(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = percent_decode(path)?;
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    if relative
        .split('/')
        .any(|part| part == ".." || part.starts_with('.'))
    {
        return None;
    }
    let file = std::fs::canonicalize(root.join(relative)).ok()?;
    (file.starts_with(root) && file.is_file()).then_some(file)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("sql") | Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_inside_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.html"), "hi").expect("write");
        std::fs::write(dir.path().join("manifest.json"), "{}").expect("write");
        let root = std::fs::canonicalize(dir.path()).expect("root");
        assert!(file_for(&root, "/").is_some_and(|f| f.ends_with("index.html")));
        assert!(file_for(&root, "/manifest.json?x=1").is_some());
        assert!(file_for(&root, "/../etc/passwd").is_none());
        assert!(file_for(&root, "/%2e%2e/etc/passwd").is_none());
        assert!(file_for(&root, "/missing.json").is_none());
    }
}
