//! Which host an agent may send as: bound to its TLS client certificate, or to its token.
//!
//! An agent names its host in its HELLO ([`crate::agent_protocol`]). The agent listener
//! believes it only when something vouches for it:
//! - a verified client certificate ([`super::tls`]) whose CN or a DNS name is that host;
//! - otherwise, with `tokens_file` set, the token in the HELLO, which the file binds to that
//!   host.
//!
//! An agent that claims a host its certificate or token does not cover is refused
//! (`host_not_allowed`), one without a known token where tokens are required is refused
//! (`bad_token`). An agent with neither, on a listener that asks for neither, is accepted as
//! before but not authenticated: its records carry no `agent_host`, and the gateway does not
//! route by its `logtail@32473` elements.
//!
//! # `tokens_file`
//! One agent per line, `HOST TOKEN`, separated by spaces; `#` starts a comment. A token is
//! kept only as its SHA-256, so comparing does not depend on how much of it matches. The file
//! is read when the configuration is loaded.

use std::collections::HashMap;
use std::path::Path;

use super::tls::PeerIdentity;
use crate::metrics::PeerRefusal;
use crate::setting::InvalidSetting;

/// The tokens of `tokens_file`: SHA-256 of a token → the host it stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTokens {
    hosts: HashMap<[u8; 32], String>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token).as_ref());
    out
}

impl AgentTokens {
    /// Reads `path` (see the [module docs](self)).
    ///
    /// # Errors
    /// `tokens_file`: the file cannot be read, a line is not `HOST TOKEN`, a token repeats,
    /// or there is no token.
    pub fn load(path: &Path) -> Result<AgentTokens, InvalidSetting> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InvalidSetting::new(
                "tokens_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        AgentTokens::parse(&text).map_err(|(line, what)| {
            InvalidSetting::new(
                "tokens_file",
                format!("{} line {line}: {what}", path.display()),
            )
        })
    }

    fn parse(text: &str) -> Result<AgentTokens, (usize, String)> {
        let mut hosts = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(host), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err((i + 1, "expected HOST TOKEN".into()));
            };
            if token.len() < 16 {
                return Err((
                    i + 1,
                    format!(
                        "the token of {host} is {} characters: use at least 16 random ones, \
                         e.g. from `openssl rand -hex 24`",
                        token.len()
                    ),
                ));
            }
            if hosts
                .insert(digest(token.as_bytes()), host.to_string())
                .is_some()
            {
                return Err((
                    i + 1,
                    "this token is given twice: one token per host".into(),
                ));
            }
        }
        if hosts.is_empty() {
            return Err((0, "no HOST TOKEN line".into()));
        }
        Ok(AgentTokens { hosts })
    }
}

/// Decides whether an agent may send as `host`; returns the host it is authenticated as
/// (`None`: not authenticated, allowed because the listener asks for nothing).
///
/// # Errors
/// Why it is refused, and what to tell it.
pub fn authenticate(
    host: &str,
    peer: Option<&PeerIdentity>,
    token: Option<&[u8]>,
    tokens: Option<&AgentTokens>,
) -> Result<Option<String>, (PeerRefusal, String)> {
    if let Some(peer) = peer {
        return if peer.names_host(host) {
            Ok(Some(host.to_string()))
        } else {
            Err((
                PeerRefusal::HostNotAllowed,
                format!(
                    "the certificate of {} does not name host {host:?} (it names {}); give the \
                     agent a certificate whose CN or DNS name is its host",
                    peer.name,
                    peer.names.join(", ")
                ),
            ))
        };
    }
    let Some(tokens) = tokens else {
        return Ok(None);
    };
    let Some(token) = token else {
        return Err((
            PeerRefusal::BadToken,
            "this listener needs a token: set [ship] token_file on the agent".into(),
        ));
    };
    match tokens.hosts.get(&digest(token)) {
        None => Err((
            PeerRefusal::BadToken,
            "unknown token: give the agent the token its host has in the gateway's tokens_file"
                .into(),
        )),
        Some(allowed) if allowed.eq_ignore_ascii_case(host) => Ok(Some(host.to_string())),
        Some(allowed) => Err((
            PeerRefusal::HostNotAllowed,
            format!("this token is {allowed}'s, not {host:?}'s"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB1: &str = "web1-0123456789abcdef";
    const DB1: &str = "db1-0123456789abcdefg";

    fn tokens() -> AgentTokens {
        AgentTokens::parse(&format!(
            "# hosts\nweb1 {WEB1}\n\ndb1 {DB1} # the database\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_token_authenticates_only_its_own_host() {
        let tokens = tokens();
        let t = Some(&tokens);
        assert_eq!(
            authenticate("web1", None, Some(WEB1.as_bytes()), t),
            Ok(Some("web1".into()))
        );
        assert_eq!(
            authenticate("db1", None, Some(WEB1.as_bytes()), t)
                .unwrap_err()
                .0,
            PeerRefusal::HostNotAllowed
        );
        assert_eq!(
            authenticate("web1", None, Some(b"guess-0123456789abc"), t)
                .unwrap_err()
                .0,
            PeerRefusal::BadToken
        );
        assert_eq!(
            authenticate("web1", None, None, t).unwrap_err().0,
            PeerRefusal::BadToken
        );
        // Nothing asked, nothing given: accepted, not authenticated.
        assert_eq!(authenticate("web1", None, None, None), Ok(None));
    }

    #[test]
    fn a_certificate_binds_the_host_to_its_names() {
        let peer = PeerIdentity {
            name: "web1".into(),
            names: vec!["web1".into(), "web1.example.com".into()],
            fingerprint: [0; 32],
        };
        assert_eq!(
            authenticate("web1.example.com", Some(&peer), None, None),
            Ok(Some("web1.example.com".into()))
        );
        assert_eq!(
            authenticate("db1", Some(&peer), Some(DB1.as_bytes()), Some(&tokens()))
                .unwrap_err()
                .0,
            PeerRefusal::HostNotAllowed
        );
    }

    #[test]
    fn bad_tokens_files_are_refused_with_their_line() {
        assert_eq!(AgentTokens::parse("web1\n").unwrap_err().0, 1);
        assert!(
            AgentTokens::parse("web1 short\n")
                .unwrap_err()
                .1
                .contains("16")
        );
        let twice = format!("web1 {WEB1}\nweb2 {WEB1}\n");
        assert_eq!(AgentTokens::parse(&twice).unwrap_err().0, 2);
        assert!(AgentTokens::parse("# nothing\n").is_err());
    }
}
