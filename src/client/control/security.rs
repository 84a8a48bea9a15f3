//! gsiftp:// on the client's control connection: AUTH GSSAPI, the ADAT rounds (delegating a
//! limited proxy, as globus-url-copy does), then ENC commands and 632 replies.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::Control;
use crate::client::ClientError;
use crate::gsi::{Channel, ClientCredentials, InitStep};

/// Most ADAT rounds a handshake may take (a TLS handshake and delegation need four or five).
const MAX_ROUNDS: usize = 16;

impl Control {
    /// AUTH GSSAPI and the ADAT exchange with the server at `host` (whose certificate must
    /// name it, or be `subject` when one is given), right after its greeting.
    pub(super) async fn gsi_authenticate(&mut self, host: &str, subject: Option<&str>) -> Result<(), ClientError> {
        let creds = ClientCredentials::from_env().map_err(gsi)?;
        let reply = self.cmd("AUTH GSSAPI").await?;
        if reply.code != 334 {
            return Err(ClientError::Refused(reply));
        }
        let check_host = subject.is_none().then_some(host);
        let (mut initiator, mut token) = creds.initiator(check_host, true).map_err(gsi)?;
        for _ in 0..MAX_ROUNDS {
            let reply = self.cmd(&format!("ADAT {}", BASE64.encode(&token))).await?;
            let answer = adat_token(reply.body())?;
            match reply.code {
                335 | 235 => {}
                _ => return Err(ClientError::Refused(reply)),
            }
            let step = match answer {
                Some(t) => initiator.step(&t).map_err(gsi)?,
                None if reply.code == 235 => return Err(gsi("the server finished before we did")),
                None => return Err(ClientError::Protocol("335 without ADAT data".into())),
            };
            match step {
                InitStep::Continue(next, out) => {
                    initiator = next;
                    token = out;
                }
                InitStep::Established(done) => {
                    if let Some(want) = subject {
                        if done.peer.presented != want && done.peer.subject != want {
                            return Err(gsi(format!(
                                "the server is {}, not the expected {want}",
                                done.peer.presented
                            )));
                        }
                    }
                    tracing::info!(server = %done.peer.presented, "GSI: server authenticated");
                    // Our last token (the delegated certificate or the flag) ends the exchange.
                    let reply = self.cmd(&format!("ADAT {}", BASE64.encode(&done.token))).await?;
                    if reply.code != 235 {
                        return Err(ClientError::Refused(reply));
                    }
                    self.security = Some(done.channel);
                    self.credentials = Some(std::sync::Arc::new(creds));
                    return Ok(());
                }
            }
        }
        Err(gsi("the security exchange did not finish"))
    }
}

/// The data after `ADAT=` in a 335/235 reply, if any.
fn adat_token(text: &str) -> Result<Option<Vec<u8>>, ClientError> {
    match text.trim().strip_prefix("ADAT=") {
        Some(b64) => BASE64
            .decode(b64.trim())
            .map(Some)
            .map_err(|_| ClientError::Protocol("ADAT data is not base64".into())),
        None => Ok(None),
    }
}

/// `ENC <base64>` for one command line (CRLF included).
pub(super) fn wrap_command(channel: &mut Channel, plain: &str) -> Result<String, ClientError> {
    let token = channel.wrap(plain.as_bytes()).map_err(gsi)?;
    Ok(format!("ENC {}\r\n", BASE64.encode(token)))
}

/// The plain reply line(s) inside one wrapped line (`631`/`632`/`633` + base64). A line the
/// server sent in clear (a 5xx before it could wrap) is kept as it is.
pub(super) fn unwrap_reply_line(channel: &mut Channel, line: &str) -> Result<String, ClientError> {
    let wrapped = ["631", "632", "633"].iter().any(|c| line.starts_with(c));
    if !wrapped || line.len() < 4 {
        return Ok(line.to_string());
    }
    let token = BASE64
        .decode(line[4..].trim())
        .map_err(|_| ClientError::Protocol("a wrapped reply is not base64".into()))?;
    let plain = channel.unwrap(&token).map_err(gsi)?;
    String::from_utf8(plain).map_err(|_| ClientError::Protocol("a wrapped reply is not UTF-8".into()))
}

fn gsi(e: impl std::fmt::Display) -> ClientError {
    ClientError::Gsi(e.to_string())
}
