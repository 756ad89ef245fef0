//! etcd's "simple" tokens: random strings a member maps to a user name,
//! kept in memory only. Every member learns a token when the
//! `Authenticate` entry that carries it is applied; a token expires after
//! `--auth-token-ttl` seconds without use on that member (each use
//! restarts the clock), and all tokens of a user go when the user is
//! deleted or changes password, or all at once when auth is disabled.
//!
//! Tokens never outlive the process: an `Authenticate` entry issued
//! before this member started (replayed from the log after a restart) is
//! not registered, so clients authenticate again after a restart, as
//! with etcd's simple tokens.
//!
//! Thread-safe (one mutex); the table holds at most [`TOKENS_MAX`]
//! tokens, dropping the least recently used beyond that.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on the tokens one member keeps.
pub const TOKENS_MAX: usize = 1 << 16;

#[derive(Debug, Clone)]
struct Entry {
    user: String,
    last_used: Instant,
}

/// The token table of one member; see the module docs.
#[derive(Debug)]
pub struct TokenTable {
    tokens: Mutex<HashMap<String, Entry>>,
    /// When this process started (ms since the Unix epoch).
    started_at_ms: u64,
}

impl Default for TokenTable {
    fn default() -> TokenTable {
        TokenTable {
            tokens: Mutex::default(),
            started_at_ms: now_ms(),
        }
    }
}

/// The wall clock in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl TokenTable {
    /// Registers `token` for `user`, unless it was issued before this
    /// member started (a replayed entry).
    pub fn insert(&self, token: &str, user: &str, issued_at_ms: u64) {
        if issued_at_ms < self.started_at_ms {
            return;
        }
        let mut tokens = self.tokens.lock();
        if tokens.len() >= TOKENS_MAX {
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(t, _)| t.clone())
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(
            token.to_owned(),
            Entry {
                user: user.to_owned(),
                last_used: Instant::now(),
            },
        );
    }

    /// The user of `token` if it is known and was used within `ttl`
    /// (refreshing it); an expired token is forgotten.
    pub fn user_of(&self, token: &str, ttl: Duration) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let e = tokens.get_mut(token)?;
        let now = Instant::now();
        if now.duration_since(e.last_used) > ttl {
            tokens.remove(token);
            return None;
        }
        e.last_used = now;
        Some(e.user.clone())
    }

    /// Forgets every token of `user`.
    pub fn remove_user(&self, user: &str) {
        self.tokens.lock().retain(|_, e| e.user != user);
    }

    /// Forgets every token.
    pub fn clear(&self) {
        self.tokens.lock().clear();
    }

    /// Forgets tokens unused for longer than `ttl`.
    pub fn expire(&self, ttl: Duration) {
        let now = Instant::now();
        self.tokens
            .lock()
            .retain(|_, e| now.duration_since(e.last_used) <= ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_before_start_are_ignored() {
        let t = TokenTable::default();
        t.insert("old", "u", t.started_at_ms - 1);
        assert_eq!(t.user_of("old", Duration::from_secs(60)), None);
        t.insert("new", "u", now_ms());
        assert_eq!(
            t.user_of("new", Duration::from_secs(60)).as_deref(),
            Some("u")
        );
        t.remove_user("u");
        assert_eq!(t.user_of("new", Duration::from_secs(60)), None);
    }

    #[test]
    fn a_token_expires_after_the_ttl() {
        let t = TokenTable::default();
        t.insert("a", "u", now_ms());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.user_of("a", Duration::from_millis(1)), None);
        // Forgotten, even with a longer TTL now.
        assert_eq!(t.user_of("a", Duration::from_secs(60)), None);
    }
}
