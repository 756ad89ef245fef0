//! The replicated authentication state (etcd's auth store): the enabled
//! flag, users, roles and the auth revision, changed only by
//! [`AuthCommand`]s applied in log order.
//!
//! Applying is deterministic and cheap: passwords arrive already hashed
//! (bcrypt, on the member that received the request), tokens already
//! chosen. Every change that succeeds raises [`AuthState::revision`] by
//! one, as etcd's auth store does; [`AuthCommand::Authenticate`] changes
//! nothing but is refused when the revision moved since the password was
//! checked, so the receiving member checks again.
//!
//! # Invariants
//! - every role a user holds exists, or is `root`;
//! - a user's roles and a role's permissions are sorted (roles by name,
//!   permissions by key) and unique (permissions by `key`, `range_end`);
//! - while `enabled`, user `root` exists and holds role `root`.

use super::perm::{covers, Interval, Perm, PermKind};
use crate::mvcc::EtcdError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the administrator user and role.
pub const ROOT: &str = "root";

/// One user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// bcrypt hash of the password; `None` for a user added with
    /// `no_password` (cannot authenticate).
    pub password_hash: Option<String>,
    /// Granted roles, sorted.
    pub roles: Vec<String>,
}

/// One role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Granted key permissions, sorted by key.
    pub perms: Vec<Perm>,
}

/// The whole auth state; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// Whether requests must carry a token.
    pub enabled: bool,
    /// Raised by every change.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
}

/// One change of the auth state, as proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// AuthEnable.
    Enable,
    /// AuthDisable.
    Disable,
    /// UserAdd; `password_hash` is `None` with `no_password`.
    UserAdd {
        /// User name.
        name: String,
        /// bcrypt hash.
        password_hash: Option<String>,
    },
    /// UserDelete.
    UserDelete {
        /// User name.
        name: String,
    },
    /// UserChangePassword.
    UserChangePassword {
        /// User name.
        name: String,
        /// bcrypt hash of the new password.
        password_hash: String,
    },
    /// UserGrantRole.
    UserGrantRole {
        /// User name.
        user: String,
        /// Role name.
        role: String,
    },
    /// UserRevokeRole.
    UserRevokeRole {
        /// User name.
        name: String,
        /// Role name.
        role: String,
    },
    /// RoleAdd.
    RoleAdd {
        /// Role name.
        name: String,
    },
    /// RoleDelete.
    RoleDelete {
        /// Role name.
        role: String,
    },
    /// RoleGrantPermission.
    RoleGrantPermission {
        /// Role name.
        name: String,
        /// The permission (replaces one with the same key and end).
        perm: Perm,
    },
    /// RoleRevokePermission.
    RoleRevokePermission {
        /// Role name.
        role: String,
        /// Key of the permission.
        key: Vec<u8>,
        /// Its range end.
        range_end: Vec<u8>,
    },
    /// Authenticate: the password of `name` was checked against the state
    /// at `auth_revision` on the receiving member; every member learns
    /// `token`.
    Authenticate {
        /// User name.
        name: String,
        /// The new simple token.
        token: String,
        /// The auth revision the password was checked at.
        auth_revision: u64,
        /// Wall-clock time the token was issued (ms since the Unix
        /// epoch, receiving member's clock).
        issued_at_ms: u64,
    },
}

/// Why an apply refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// etcd's error.
    Etcd(EtcdError),
    /// The state changed since the password was checked: check again.
    Stale,
}

impl From<EtcdError> for Refusal {
    fn from(e: EtcdError) -> Refusal {
        Refusal::Etcd(e)
    }
}

impl AuthState {
    /// Applies `cmd`; on success the state changed (and its revision
    /// moved) unless the command was a no-op in etcd's terms.
    pub fn apply(&mut self, cmd: &AuthCommand) -> Result<(), Refusal> {
        use AuthCommand as C;
        match cmd {
            C::Enable => {
                if self.enabled {
                    return Ok(());
                }
                let root = self
                    .users
                    .get(ROOT)
                    .ok_or(EtcdError::AUTH_ROOT_USER_NOT_EXIST)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(EtcdError::AUTH_ROOT_ROLE_NOT_EXIST.into());
                }
                self.enabled = true;
            }
            C::Disable => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
            }
            C::UserAdd {
                name,
                password_hash,
            } => {
                if name.is_empty() {
                    return Err(EtcdError::AUTH_USER_EMPTY.into());
                }
                if self.users.contains_key(name) {
                    return Err(EtcdError::AUTH_USER_ALREADY_EXIST.into());
                }
                self.users.insert(
                    name.clone(),
                    User {
                        password_hash: password_hash.clone(),
                        roles: Vec::new(),
                    },
                );
            }
            C::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(EtcdError::AUTH_INVALID_MGMT.into());
                }
                if self.users.remove(name).is_none() {
                    return Err(EtcdError::AUTH_USER_NOT_FOUND.into());
                }
            }
            C::UserChangePassword {
                name,
                password_hash,
            } => {
                let user = self
                    .users
                    .get_mut(name)
                    .ok_or(EtcdError::AUTH_USER_NOT_FOUND)?;
                user.password_hash = Some(password_hash.clone());
            }
            C::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(EtcdError::AUTH_USER_NOT_FOUND.into());
                }
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(EtcdError::AUTH_ROLE_NOT_FOUND.into());
                }
                let u = self.users.get_mut(user).expect("checked above");
                match u.roles.binary_search(role) {
                    // etcd ignores a second grant of the same role.
                    Ok(_) => return Ok(()),
                    Err(i) => u.roles.insert(i, role.clone()),
                }
            }
            C::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(EtcdError::AUTH_INVALID_MGMT.into());
                }
                let u = self
                    .users
                    .get_mut(name)
                    .ok_or(EtcdError::AUTH_USER_NOT_FOUND)?;
                match u.roles.binary_search(role) {
                    Ok(i) => {
                        u.roles.remove(i);
                    }
                    Err(_) => return Err(EtcdError::AUTH_ROLE_NOT_GRANTED.into()),
                }
            }
            C::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(EtcdError::AUTH_ROLE_EMPTY.into());
                }
                if self.roles.contains_key(name) {
                    return Err(EtcdError::AUTH_ROLE_ALREADY_EXIST.into());
                }
                self.roles.insert(name.clone(), Role::default());
            }
            C::RoleDelete { role } => {
                if self.enabled && role == ROOT {
                    return Err(EtcdError::AUTH_INVALID_MGMT.into());
                }
                if self.roles.remove(role).is_none() {
                    return Err(EtcdError::AUTH_ROLE_NOT_FOUND.into());
                }
                for u in self.users.values_mut() {
                    u.roles.retain(|r| r != role);
                }
            }
            C::RoleGrantPermission { name, perm } => {
                let r = self
                    .roles
                    .get_mut(name)
                    .ok_or(EtcdError::AUTH_ROLE_NOT_FOUND)?;
                match r
                    .perms
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(p) => p.kind = perm.kind,
                    None => {
                        let at = r.perms.partition_point(|p| p.key <= perm.key);
                        r.perms.insert(at, perm.clone());
                    }
                }
            }
            C::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let r = self
                    .roles
                    .get_mut(role)
                    .ok_or(EtcdError::AUTH_ROLE_NOT_FOUND)?;
                let before = r.perms.len();
                r.perms
                    .retain(|p| !(p.key == *key && p.range_end == *range_end));
                if r.perms.len() == before {
                    return Err(EtcdError::AUTH_PERMISSION_NOT_GRANTED.into());
                }
            }
            C::Authenticate {
                name,
                auth_revision,
                ..
            } => {
                if !self.enabled {
                    return Err(EtcdError::AUTH_NOT_ENABLED.into());
                }
                if *auth_revision != self.revision {
                    return Err(Refusal::Stale);
                }
                if !self.users.contains_key(name) {
                    return Err(EtcdError::AUTH_FAILED.into());
                }
                return Ok(());
            }
        }
        self.revision += 1;
        Ok(())
    }

    /// Whether `user` holds role `root`.
    pub fn is_root(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// The intervals `user` may access for `need` (`Read` or `Write`).
    fn granted(&self, user: &User, need: PermKind) -> Vec<Interval> {
        user.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .filter(|p| p.kind.grants(need))
            .map(|p| Interval::of(&p.key, &p.range_end))
            .collect()
    }

    /// Whether `user` may access every key of `[key, range_end)` (etcd's
    /// conventions) for `need`. Role `root` may access everything; an
    /// unknown user nothing.
    pub fn permitted(&self, user: &str, need: PermKind, key: &[u8], range_end: &[u8]) -> bool {
        let Some(u) = self.users.get(user) else {
            return false;
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return true;
        }
        covers(&self.granted(u, need), &Interval::of(key, range_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> Option<String> {
        Some("$2b$04$not-a-real-hash".to_owned())
    }

    fn apply(s: &mut AuthState, c: AuthCommand) -> Result<(), EtcdError> {
        s.apply(&c).map_err(|r| match r {
            Refusal::Etcd(e) => e,
            Refusal::Stale => panic!("unexpected stale refusal"),
        })
    }

    fn with_root() -> AuthState {
        let mut s = AuthState::default();
        apply(
            &mut s,
            AuthCommand::UserAdd {
                name: ROOT.into(),
                password_hash: hash(),
            },
        )
        .unwrap();
        s
    }

    fn grant_root_role(s: &mut AuthState) {
        apply(
            s,
            AuthCommand::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
        )
        .unwrap();
    }

    #[test]
    fn enable_needs_root_user_with_root_role() {
        let mut s = AuthState::default();
        assert_eq!(
            apply(&mut s, AuthCommand::Enable),
            Err(EtcdError::AUTH_ROOT_USER_NOT_EXIST)
        );
        let mut s = with_root();
        assert_eq!(
            apply(&mut s, AuthCommand::Enable),
            Err(EtcdError::AUTH_ROOT_ROLE_NOT_EXIST)
        );
        grant_root_role(&mut s);
        let rev = s.revision;
        apply(&mut s, AuthCommand::Enable).unwrap();
        assert!(s.enabled);
        assert_eq!(s.revision, rev + 1);
        assert_eq!(
            apply(&mut s, AuthCommand::UserDelete { name: ROOT.into() }),
            Err(EtcdError::AUTH_INVALID_MGMT)
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserRevokeRole {
                    name: ROOT.into(),
                    role: ROOT.into()
                }
            ),
            Err(EtcdError::AUTH_INVALID_MGMT)
        );
        assert!(s.permitted(ROOT, PermKind::Write, b"any", b"\0"));
    }

    #[test]
    fn users_roles_and_permissions() {
        let mut s = with_root();
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserAdd {
                    name: ROOT.into(),
                    password_hash: hash()
                }
            ),
            Err(EtcdError::AUTH_USER_ALREADY_EXIST)
        );
        apply(&mut s, AuthCommand::RoleAdd { name: "r".into() }).unwrap();
        assert_eq!(
            apply(&mut s, AuthCommand::RoleAdd { name: "r".into() }),
            Err(EtcdError::AUTH_ROLE_ALREADY_EXIST)
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserGrantRole {
                    user: ROOT.into(),
                    role: "nope".into()
                }
            ),
            Err(EtcdError::AUTH_ROLE_NOT_FOUND)
        );
        apply(
            &mut s,
            AuthCommand::UserAdd {
                name: "u".into(),
                password_hash: hash(),
            },
        )
        .unwrap();
        for _ in 0..2 {
            apply(
                &mut s,
                AuthCommand::UserGrantRole {
                    user: "u".into(),
                    role: "r".into(),
                },
            )
            .unwrap();
        }
        assert_eq!(s.users["u"].roles, vec!["r".to_owned()]);
        let grant = |kind, key: &[u8], end: &[u8]| AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm: Perm {
                kind,
                key: key.to_vec(),
                range_end: end.to_vec(),
            },
        };
        apply(&mut s, grant(PermKind::Read, b"/k", b"")).unwrap();
        apply(&mut s, grant(PermKind::Read, b"/a/", b"/a0")).unwrap();
        // Same key and end: the kind is replaced.
        apply(&mut s, grant(PermKind::Write, b"/a/", b"/a0")).unwrap();
        let keys: Vec<&[u8]> = s.roles["r"].perms.iter().map(|p| &p.key[..]).collect();
        assert_eq!(keys, vec![&b"/a/"[..], b"/k"]);
        assert!(s.permitted("u", PermKind::Write, b"/a/x", b""));
        assert!(!s.permitted("u", PermKind::Read, b"/a/x", b""));
        assert!(s.permitted("u", PermKind::Read, b"/k", b""));
        assert!(!s.permitted("nobody", PermKind::Read, b"/k", b""));
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::RoleRevokePermission {
                    role: "r".into(),
                    key: b"/k".to_vec(),
                    range_end: b"/l".to_vec()
                }
            ),
            Err(EtcdError::AUTH_PERMISSION_NOT_GRANTED)
        );
        apply(&mut s, AuthCommand::RoleDelete { role: "r".into() }).unwrap();
        assert!(s.users["u"].roles.is_empty());
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserRevokeRole {
                    name: "u".into(),
                    role: "r".into()
                }
            ),
            Err(EtcdError::AUTH_ROLE_NOT_GRANTED)
        );
    }

    #[test]
    fn authenticate_is_refused_when_the_state_moved() {
        let mut s = with_root();
        let auth = |rev| AuthCommand::Authenticate {
            name: ROOT.into(),
            token: "t".into(),
            auth_revision: rev,
            issued_at_ms: 0,
        };
        assert_eq!(
            s.apply(&auth(s.revision)),
            Err(Refusal::Etcd(EtcdError::AUTH_NOT_ENABLED))
        );
        grant_root_role(&mut s);
        apply(&mut s, AuthCommand::Enable).unwrap();
        assert_eq!(s.apply(&auth(s.revision - 1)), Err(Refusal::Stale));
        let rev = s.revision;
        assert_eq!(s.apply(&auth(rev)), Ok(()));
        assert_eq!(s.revision, rev, "authenticate changes nothing");
    }
}
