//! etcd v3 authentication and authorization.
//!
//! - [`state`]: the replicated auth state (users, roles, permissions,
//!   enabled flag, auth revision) and the commands that change it, applied
//!   by the state machine in log order. The state lives in the store's
//!   meta area under [`META_AUTH`] (postcard), written in the same commit
//!   as the entry's applied log id, so snapshots carry it and KV ranges
//!   and watches never see it.
//! - [`perm`]: key permissions as intervals and the coverage check.
//! - [`check`]: the permissions a write needs.
//! - [`tokens`]: the in-memory simple tokens of a member.
//!
//! [`AuthShared`] is what the state machine and the client services of
//! one member share: the applied state (swapped as a whole after each
//! change) and the token table.

pub mod check;
pub mod perm;
pub mod state;
pub mod tokens;

pub use perm::{Perm, PermKind};
pub use state::{AuthCommand, AuthState, Refusal, ROOT};
pub use tokens::TokenTable;

use parking_lot::RwLock;
use std::sync::Arc;

/// Meta name (see [`crate::mvcc::MvccStore::meta`]) of the auth state.
pub const META_AUTH: &[u8] = b"auth";

/// The auth state as applied on this member, plus its tokens.
#[derive(Debug, Default)]
pub struct AuthShared {
    state: RwLock<Arc<AuthState>>,
    /// Simple tokens known to this member.
    pub tokens: TokenTable,
}

impl AuthShared {
    /// The state as last applied.
    pub fn state(&self) -> Arc<AuthState> {
        self.state.read().clone()
    }

    /// Replaces the state (after an apply or a snapshot install).
    pub fn set_state(&self, state: AuthState) {
        *self.state.write() = Arc::new(state);
    }
}

/// Decodes the stored auth state (absent: the empty state).
pub fn decode_state(bytes: Option<&[u8]>) -> Result<AuthState, postcard::Error> {
    match bytes {
        Some(b) => postcard::from_bytes(b),
        None => Ok(AuthState::default()),
    }
}
