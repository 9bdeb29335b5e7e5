//! Tokens already verified, remembered until they expire.
//!
//! A client sends the same bearer token with every request for minutes, and
//! checking its signature again each time is the largest single cost of
//! authentication (an RSA or ECDSA verification, then base64 and JSON of the
//! claims): about a tenth of a gateway's CPU per request. So a verifier
//! remembers the principal of a token it accepted, until the token's `exp`
//! plus the leeway, which is exactly as long as verifying it again would
//! accept it.
//!
//! What stays checked on every request: the verifier still asks whether the
//! key that signed the token is trusted ([`Remembered::key_id`]), so a key the
//! issuer removed stops working as soon as the key set no longer holds it,
//! cached or not. Only successes are remembered: a bad token is verified (and
//! refused) every time.
//!
//! Tokens are kept by their SHA-256, not their text (a token is a kilobyte or
//! more), and the table is bounded: at [`VerifiedTokens::CAPACITY`] entries the
//! expired ones go, and if that is not enough, all of them (they are only a
//! cache; the next request of each client verifies again).

use crate::Principal;
use std::collections::HashMap;
use std::sync::Mutex;

/// A token accepted earlier.
#[derive(Clone, Debug)]
pub struct Remembered {
    pub principal: Principal,
    /// The key that signed it (`kid`), to check it is still trusted.
    pub key_id: Option<String>,
}

struct Entry {
    remembered: Remembered,
    /// Unix seconds after which the token is refused (`exp` + leeway).
    valid_until: i64,
}

/// The cache of one verifier. Every method takes `&self`.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl VerifiedTokens {
    /// Entries kept at most (a few megabytes).
    pub const CAPACITY: usize = 10_000;

    /// The principal of `token` if it was accepted and has not expired at `now`
    /// (Unix seconds).
    pub fn get(&self, token: &str, now: i64) -> Option<Remembered> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&digest(token))
            .filter(|entry| now <= entry.valid_until)
            .map(|entry| entry.remembered.clone())
    }

    /// Remembers that `token` was accepted and stays valid until `valid_until`
    /// (Unix seconds: its `exp` plus the leeway the verifier allows).
    pub fn remember(&self, token: &str, remembered: Remembered, valid_until: i64, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::CAPACITY {
            entries.retain(|_, entry| now <= entry.valid_until);
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            digest(token),
            Entry {
                remembered,
                valid_until,
            },
        );
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn remembered(subject: &str) -> Remembered {
        Remembered {
            principal: Principal {
                subject: subject.into(),
                roles: [Role::Customer].into(),
            },
            key_id: Some("k1".into()),
        }
    }

    #[test]
    fn a_remembered_token_is_known_until_it_expires_and_no_other_is() {
        let cache = VerifiedTokens::default();
        cache.remember("token-a", remembered("alice"), 1_000, 900);
        let hit = cache
            .get("token-a", 1_000)
            .expect("known until valid_until");
        assert_eq!(hit.principal.subject, "alice");
        assert_eq!(hit.key_id.as_deref(), Some("k1"));
        assert!(cache.get("token-a", 1_001).is_none(), "expired");
        assert!(cache.get("token-b", 950).is_none(), "never verified");
        assert!(cache.get("token-a ", 950).is_none(), "a different text");
    }

    #[test]
    fn the_table_never_grows_past_its_capacity() {
        let cache = VerifiedTokens::default();
        // Half expired by `now` = 100: those go first.
        for n in 0..VerifiedTokens::CAPACITY {
            let valid_until = if n % 2 == 0 { 50 } else { 500 };
            cache.remember(&format!("t{n}"), remembered("x"), valid_until, 10);
        }
        assert_eq!(cache.len(), VerifiedTokens::CAPACITY);
        cache.remember("one-more", remembered("y"), 500, 100);
        assert_eq!(cache.len(), VerifiedTokens::CAPACITY / 2 + 1);
        assert!(cache.get("t1", 100).is_some(), "valid ones are kept");
        // All valid: the table starts again rather than grow.
        let full = VerifiedTokens::default();
        for n in 0..VerifiedTokens::CAPACITY {
            full.remember(&format!("t{n}"), remembered("x"), 500, 10);
        }
        full.remember("one-more", remembered("y"), 500, 10);
        assert_eq!(full.len(), 1);
        assert!(full.get("one-more", 10).is_some());
    }
}
