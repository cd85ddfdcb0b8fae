//! ICE server configuration handed to clients, with TURN credentials per the
//! TURN REST API convention (draft-uberti-behave-turn-rest-00, as coturn's
//! `use-auth-secret` implements it).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use softphone_protocol::IceServer;

use crate::Config;

/// STUN entries, then one TURN entry whose user name is
/// `"<expiry unix s>:<tenant>/<user>"` and whose credential is
/// base64(HMAC-SHA1(secret, user name)), valid for `config.turn_ttl`.
pub fn ice_servers(config: &Config, tenant: &str, user: &str, now_ms: u64) -> Vec<IceServer> {
    let mut out = Vec::new();
    if !config.stun_urls.is_empty() {
        out.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let expiry = now_ms / 1000 + config.turn_ttl.as_secs();
        let username = format!("{expiry}:{tenant}/{user}");
        out.push(IceServer {
            urls: config.turn_urls.clone(),
            credential: Some(turn_credential(secret, &username)),
            username: Some(username),
        });
    }
    out
}

/// base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credential_matches_coturn_convention() {
        // echo -n "1700000000:acme/alice" | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(
            turn_credential("secret", "1700000000:acme/alice"),
            "9pbIwZq2qSv903jR+B4OJdxc96U="
        );
    }

    #[test]
    fn entries_follow_config() {
        let mut c = Config::with_data_dir("/tmp");
        assert!(ice_servers(&c, "t", "u", 0).is_empty());
        c.stun_urls = vec!["stun:s:3478".into()];
        c.turn_urls = vec!["turn:s:3478".into()];
        c.turn_secret = Some("k".into());
        let s = ice_servers(&c, "t", "u", 1_000_000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].username.as_deref(), Some("4600:t/u"));
        assert_eq!(
            s[1].credential.as_deref(),
            Some(turn_credential("k", "4600:t/u").as_str())
        );
    }
}
