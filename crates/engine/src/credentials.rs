//! Where the session token lives: the OS credential store (Secret Service on
//! Linux, Credential Manager on Windows, Keychain on macOS) through the
//! `keyring` crate, or memory for tests that say so. Passwords are never
//! stored anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::EngineError;

/// Service name of our entries in the OS credential store.
pub const KEYRING_SERVICE: &str = "softphone";

/// A place to keep session tokens, keyed by account
/// (`"<server>|<tenant>|<user>"`, see [`account_key`]).
#[derive(Clone)]
pub enum TokenStore {
    /// The OS credential store.
    Keyring,
    /// Process memory only (tests, `--no-keyring`): gone at exit.
    Memory(Arc<Mutex<HashMap<String, String>>>),
}

/// The key of an account's entry.
pub fn account_key(server: &str, tenant: &str, user: &str) -> String {
    format!("{}|{tenant}|{user}", server.trim_end_matches('/'))
}

/// The in-memory map; a panic while it was held cannot leave it half
/// written (each operation is one map call), so poisoning is ignored.
fn memory(
    m: &Mutex<HashMap<String, String>>,
) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenStore {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Saves (replaces) the token of an account.
    ///
    /// # Errors
    /// [`EngineError::Credentials`] when the OS store is unavailable (no
    /// Secret Service running, locked keychain).
    pub fn save(&self, account: &str, token: &str) -> Result<(), EngineError> {
        match self {
            Self::Keyring => keyring::Entry::new(KEYRING_SERVICE, account)
                .and_then(|e| e.set_password(token))
                .map_err(EngineError::from),
            Self::Memory(m) => {
                memory(m).insert(account.into(), token.into());
                Ok(())
            }
        }
    }

    /// The token of an account, if one is stored.
    ///
    /// # Errors
    /// [`EngineError::Credentials`] when the OS store is unavailable.
    pub fn load(&self, account: &str) -> Result<Option<String>, EngineError> {
        match self {
            Self::Keyring => {
                match keyring::Entry::new(KEYRING_SERVICE, account).and_then(|e| e.get_password()) {
                    Ok(t) => Ok(Some(t)),
                    Err(keyring::Error::NoEntry) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Self::Memory(m) => Ok(memory(m).get(account).cloned()),
        }
    }

    /// Deletes the token of an account (sign-out). Deleting a missing entry
    /// is not an error.
    ///
    /// # Errors
    /// [`EngineError::Credentials`] when the OS store is unavailable.
    pub fn delete(&self, account: &str) -> Result<(), EngineError> {
        match self {
            Self::Keyring => match keyring::Entry::new(KEYRING_SERVICE, account)
                .and_then(|e| e.delete_credential())
            {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Self::Memory(m) => {
                memory(m).remove(account);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_saves_loads_and_deletes() {
        let s = TokenStore::memory();
        let k = account_key("http://x:1/", "acme", "alice");
        assert_eq!(k, "http://x:1|acme|alice");
        assert_eq!(s.load(&k).unwrap(), None);
        s.save(&k, "t1").unwrap();
        assert_eq!(s.load(&k).unwrap().as_deref(), Some("t1"));
        s.delete(&k).unwrap();
        s.delete(&k).unwrap();
        assert_eq!(s.load(&k).unwrap(), None);
    }
}
