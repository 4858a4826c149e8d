//! E-mail alerts over SMTP, to the server `STRATA_SMTP_URL` names: `smtp://host:25` (plain, a
//! relay on this machine or network), `smtps://user:password@host:465` (TLS from the start)
//! or `smtp+starttls://user:password@host:587` (STARTTLS). A password is only ever sent over
//! TLS, checked against the system's certificate authorities. The sender is
//! `STRATA_SMTP_FROM`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where to send mail from and through, read from the environment.
#[derive(Debug, Clone)]
pub struct Server {
    host: String,
    port: u16,
    security: Security,
    login: Option<(String, String)>,
    from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    Tls,
    StartTls,
}

impl Server {
    /// The server `STRATA_SMTP_URL` names, with the sender `STRATA_SMTP_FROM`.
    pub fn from_env() -> Result<Self, String> {
        let url = std::env::var("STRATA_SMTP_URL").map_err(|_| {
            "STRATA_SMTP_URL is not set: e-mail alerts need an SMTP server, e.g. smtp+starttls://user:password@smtp.example.com:587".to_string()
        })?;
        let from = std::env::var("STRATA_SMTP_FROM")
            .map_err(|_| "STRATA_SMTP_FROM is not set: the address alerts come from".to_string())?;
        Self::parse(&url, &from)
    }

    fn parse(text: &str, from: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(text).map_err(|e| format!("STRATA_SMTP_URL is not a URL ({e})"))?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (Security::Plain, 25),
            "smtps" => (Security::Tls, 465),
            "smtp+starttls" => (Security::StartTls, 587),
            other => {
                return Err(format!(
                    "STRATA_SMTP_URL: `{other}://` is not smtp://, smtps:// or smtp+starttls://"
                ));
            }
        };
        let host = url
            .host_str()
            .ok_or("STRATA_SMTP_URL names no host")?
            .to_string();
        let login = match url.username() {
            "" => None,
            user => {
                let decode = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                Some((decode(user), decode(url.password().unwrap_or(""))))
            }
        };
        if login.is_some() && security == Security::Plain {
            return Err(
                "STRATA_SMTP_URL: a password is only sent over TLS: use smtps:// or smtp+starttls://"
                    .into(),
            );
        }
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            login,
            from: from.to_string(),
        })
    }

    /// Send one plain-text message.
    pub async fn send(&self, to: &[String], subject: &str, text: &str) -> Result<(), String> {
        tokio::time::timeout(Duration::from_secs(60), self.session(to, subject, text))
            .await
            .map_err(|_| format!("{}:{} did not answer within 60 s", self.host, self.port))?
    }

    async fn session(&self, to: &[String], subject: &str, text: &str) -> Result<(), String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot reach {}:{}: {e}", self.host, self.port))?;
        match self.security {
            Security::Tls => {
                let tls = self.tls(tcp).await?;
                self.converse(BufReader::new(tls), to, subject, text, false)
                    .await
            }
            Security::Plain => {
                self.converse(BufReader::new(tcp), to, subject, text, false)
                    .await
            }
            Security::StartTls => {
                let mut plain = BufReader::new(tcp);
                expect(&mut plain, 220).await?;
                command(&mut plain, "EHLO strata", 250).await?;
                command(&mut plain, "STARTTLS", 220).await?;
                let tls = self.tls(plain.into_inner()).await?;
                self.converse(BufReader::new(tls), to, subject, text, true)
                    .await
            }
        }
    }

    async fn tls(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.host))
    }

    /// The SMTP conversation, from the greeting (or, after STARTTLS, from a new EHLO).
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: BufReader<S>,
        to: &[String],
        subject: &str,
        text: &str,
        greeted: bool,
    ) -> Result<(), String> {
        if !greeted {
            expect(&mut s, 220).await?;
        }
        command(&mut s, "EHLO strata", 250).await?;
        if let Some((user, password)) = &self.login {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            command(&mut s, &format!("AUTH PLAIN {token}"), 235).await?;
        }
        command(&mut s, &format!("MAIL FROM:<{}>", self.from), 250).await?;
        for address in to {
            command(&mut s, &format!("RCPT TO:<{address}>"), 250).await?;
        }
        command(&mut s, "DATA", 354).await?;
        let mut message = format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
            self.from,
            to.join(", "),
            subject.replace(['\r', '\n'], " "),
            chrono::Utc::now().to_rfc2822()
        );
        for line in text.lines() {
            // A line starting with a dot gets another (RFC 5321, 4.5.2).
            if line.starts_with('.') {
                message.push('.');
            }
            message.push_str(line);
            message.push_str("\r\n");
        }
        message.push_str(".\r\n");
        s.get_mut()
            .write_all(message.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        expect(&mut s, 250).await?;
        let _ = command(&mut s, "QUIT", 221).await;
        Ok(())
    }
}

/// Send a command and read its reply, which must have `code`.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    code: u16,
) -> Result<(), String> {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let verb = line.split_whitespace().next().unwrap_or("");
    expect(s, code).await.map_err(|e| format!("{verb}: {e}"))
}

/// Read a (possibly multi-line) reply; it must have `code`.
async fn expect<S: AsyncRead + Unpin>(s: &mut BufReader<S>, code: u16) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("the server closed the connection".into());
        }
        let got: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if got != code {
            return Err(format!("the server answered {}", line.trim_end()));
        }
        // `250-…` continues, `250 …` ends.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_security_and_passwords_need_tls() {
        let s =
            Server::parse("smtp+starttls://ada%40x.org:p%40ss@mail.x.org", "a@x.org").expect("url");
        assert_eq!(s.security, Security::StartTls);
        assert_eq!(s.port, 587);
        assert_eq!(s.login, Some(("ada@x.org".into(), "p@ss".into())));
        assert_eq!(
            Server::parse("smtp://localhost", "a@x.org")
                .expect("plain")
                .port,
            25
        );
        let err = Server::parse("smtp://u:p@mail.x.org", "a@x.org").expect_err("plain password");
        assert!(err.contains("only sent over TLS"), "{err}");
        let err = Server::parse("imap://mail.x.org", "a@x.org").expect_err("scheme");
        assert!(err.contains("not smtp://"), "{err}");
    }
}
