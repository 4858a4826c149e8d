//! Logging in over the wire: SCRAM-SHA-256 (RFC 5802, RFC 7677) checked against the verifier
//! kept for each user, as PostgreSQL does, so the password itself is never stored or sent.
//! `--dev` lets anyone in as `admin`, on a loopback address only.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt};
use hmac::{Hmac, Mac};
use password_hash::rand_core::{OsRng, RngCore};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sha2::{Digest, Sha256};
use strata_meta::MetaStore;

use crate::users::Role;

const MECHANISM: &str = "SCRAM-SHA-256";

/// Who a connection logged in as; kept in the connection's session extensions.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub role: Role,
}

/// The verifier's parts: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Verifier {
    fn parse(text: &str) -> Option<Self> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            iterations: iterations.parse().ok()?,
            salt: b64.decode(salt).ok()?,
            stored_key: b64.decode(stored).ok()?,
            server_key: b64.decode(server).ok()?,
        })
    }

    /// A verifier no password matches, for users that do not exist: the exchange looks the
    /// same either way, so it does not tell who has an account.
    fn decoy() -> Self {
        let mut salt = vec![0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut stored_key = vec![0u8; 32];
        OsRng.fill_bytes(&mut stored_key);
        Self {
            iterations: 4096,
            salt,
            stored_key,
            server_key: vec![0u8; 32],
        }
    }
}

enum State {
    /// Waiting for the startup message.
    Startup,
    /// The mechanisms were offered; waiting for the client's first message.
    Offered,
    /// The server's first message was sent; waiting for the proof.
    Challenged {
        user: String,
        role: Option<Role>,
        verifier: Verifier,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// One connection's login.
pub struct Startup {
    meta: Arc<MetaStore>,
    dev: bool,
    params: DefaultServerParameterProvider,
    state: tokio::sync::Mutex<State>,
}

impl Startup {
    pub fn new(meta: Arc<MetaStore>, dev: bool) -> Self {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = super::SERVER_VERSION.to_string();
        params.default_transaction_read_only = true;
        params.is_superuser = false;
        Self {
            meta,
            dev,
            params,
            state: tokio::sync::Mutex::new(State::Startup),
        }
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

fn refused(user: &str, why: &str) -> PgWireError {
    tracing::warn!(user, why, "postgres wire: login refused");
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

fn protocol(message: &str) -> PgWireError {
    fatal("08P01", format!("invalid SCRAM exchange: {message}"))
}

fn hmac(key: &[u8], text: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text);
    mac.finalize().into_bytes().to_vec()
}

/// The value of attribute `name` (`n=...`) in a SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.state.lock().await;
        match (message, &*state) {
            (PgWireFrontendMessage::Startup(startup), State::Startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.dev {
                    let user = client
                        .metadata()
                        .get("user")
                        .cloned()
                        .unwrap_or_else(|| "dev".into());
                    client.session_extensions().insert(Login {
                        user,
                        role: Role::Admin,
                    });
                    *state = State::Done;
                    return finish_authentication(client, &self.params).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.into()],
                    )))
                    .await?;
                *state = State::Offered;
            }
            (PgWireFrontendMessage::PasswordMessageFamily(msg), State::Offered) => {
                let initial = msg.into_sasl_initial_response()?;
                if initial.auth_method != MECHANISM {
                    return Err(protocol(&format!(
                        "mechanism {} is not offered; use {MECHANISM}",
                        initial.auth_method
                    )));
                }
                let data = initial.data.unwrap_or_default();
                let first = std::str::from_utf8(&data).map_err(|_| protocol("not UTF-8"))?;
                // gs2 header: no channel binding ("n,,") or not supported by the server ("y,,").
                let bare = first
                    .strip_prefix("n,,")
                    .or_else(|| first.strip_prefix("y,,"))
                    .ok_or_else(|| protocol("channel binding is not supported"))?;
                let client_nonce = attribute(bare, 'r')
                    .ok_or_else(|| protocol("no nonce in the first message"))?;
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let found = self
                    .meta
                    .user(&user)
                    .map_err(|e| fatal("XX000", format!("cannot read users: {e}")))?;
                let (role, verifier) = match found {
                    Some((record, secrets)) => match Verifier::parse(&secrets.scram) {
                        Some(v) => (Role::parse(&record.role), v),
                        None => (None, Verifier::decoy()),
                    },
                    None => (None, Verifier::decoy()),
                };
                let mut server_nonce = [0u8; 18];
                OsRng.fill_bytes(&mut server_nonce);
                let b64 = base64::engine::general_purpose::STANDARD;
                let nonce = format!("{client_nonce}{}", b64.encode(server_nonce));
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    b64.encode(&verifier.salt),
                    verifier.iterations
                );
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.clone().into_bytes().into()),
                    ))
                    .await?;
                *state = State::Challenged {
                    user,
                    role,
                    verifier,
                    client_first_bare: bare.to_string(),
                    server_first,
                    nonce,
                };
            }
            (PgWireFrontendMessage::PasswordMessageFamily(msg), State::Challenged { .. }) => {
                let State::Challenged {
                    user,
                    role,
                    verifier,
                    client_first_bare,
                    server_first,
                    nonce,
                } = std::mem::replace(&mut *state, State::Done)
                else {
                    unreachable!("matched above")
                };
                let response = msg.into_sasl_response()?;
                let last =
                    std::str::from_utf8(&response.data).map_err(|_| protocol("not UTF-8"))?;
                let (without_proof, proof) = last
                    .rsplit_once(",p=")
                    .ok_or_else(|| protocol("no proof in the final message"))?;
                if attribute(without_proof, 'r') != Some(nonce.as_str()) {
                    return Err(protocol("the nonce does not match"));
                }
                let b64 = base64::engine::general_purpose::STANDARD;
                let proof = b64
                    .decode(proof)
                    .map_err(|_| protocol("the proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = hmac(&verifier.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(refused(&user, "malformed proof"));
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let matches = Sha256::digest(&client_key).as_slice() == verifier.stored_key;
                let Some(role) = role.filter(|_| matches) else {
                    return Err(refused(&user, "wrong password or no such user"));
                };
                let server_signature = hmac(&verifier.server_key, auth_message.as_bytes());
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(
                            format!("v={}", b64.encode(server_signature))
                                .into_bytes()
                                .into(),
                        ),
                    ))
                    .await?;
                tracing::info!(user, role = role.as_str(), "postgres wire: logged in");
                client.session_extensions().insert(Login { user, role });
                finish_authentication(client, &self.params).await?;
            }
            _ => return Err(protocol("unexpected message during login")),
        }
        Ok(())
    }
}
