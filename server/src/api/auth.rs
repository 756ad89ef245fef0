//! `etcdserverpb.Auth`, and the checks every other service makes while
//! authentication is enabled ([`ApiContext::caller`] at the start of each
//! handler, then [`ApiContext::require_root`],
//! [`ApiContext::require_read`] or [`ApiContext::as_user`]).
//!
//! Changes go through Raft as [`AuthCommand`]s: passwords are hashed with
//! bcrypt here, on the member that received the request, so applying is
//! cheap; `Authenticate` checks the password here, then proposes the new
//! token so every member learns it. Reads (UserGet, RoleList, ...) are
//! served from this member's applied state after a read barrier.
//!
//! Who may call what while auth is enabled (etcd's rules): everything
//! needs a token but `Authenticate` (and `AuthEnable`, which is refused
//! anyway once enabled); user and role management needs role `root`,
//! except that a user may read itself (`UserGet`) and the roles it holds
//! (`RoleGet`); `AuthStatus` needs any user.

use super::ApiContext;
use crate::auth::{check, AuthCommand, AuthShared, Perm, PermKind};
use crate::mvcc::EtcdError;
use crate::raft::mvcc_applier::AUTH_STALE_MESSAGE;
use crate::raft::Request;
use sett_proto::authpb;
use sett_proto::etcdserverpb as pb;
use sett_proto::etcdserverpb::auth_server::Auth;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The gRPC metadata key etcd clients put their token in.
pub(crate) const TOKEN_METADATA: &str = "token";
/// Attempts of an `Authenticate` whose entry met a changed auth state.
const AUTHENTICATE_ATTEMPTS: usize = 3;

/// Who makes a request: `user` is `None` while auth is disabled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// The user the token names.
    pub(crate) user: Option<String>,
    /// The token as received (forwarded with calls to the leader).
    pub(crate) token: Option<MetadataValue<Ascii>>,
}

impl Caller {
    /// Adds the caller's token to a call forwarded to another member.
    pub(crate) fn forward_token<T>(&self, req: &mut GrpcRequest<T>) {
        if let Some(t) = &self.token {
            req.metadata_mut().insert(TOKEN_METADATA, t.clone());
        }
    }
}

fn denied() -> Status {
    EtcdError::AUTH_PERMISSION_DENIED.to_status()
}

impl ApiContext {
    /// This member's auth state and tokens.
    pub(crate) fn auth(&self) -> &Arc<AuthShared> {
        self.inner.applier.auth()
    }

    /// The caller of `req`: while auth is enabled, the user its token
    /// names (etcd's `user name is empty` without a token, `invalid auth
    /// token` for one this member does not know).
    pub(crate) fn caller<T>(
        &self,
        req: &GrpcRequest<T>,
    ) -> impl std::future::Future<Output = Result<Caller, Status>> + Send + '_ {
        // Only the token is kept: a streaming request is not `Sync`.
        let token = req.metadata().get(TOKEN_METADATA).cloned();
        self.caller_of(token)
    }

    async fn caller_of(&self, token: Option<MetadataValue<Ascii>>) -> Result<Caller, Status> {
        let r = self.caller_now(token.clone());
        if r.as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unauthenticated)
        {
            // A token issued through another member may not be applied
            // here yet: look again once this member has caught up.
            self.read_barrier().await?;
            return self.caller_now(token);
        }
        r
    }

    fn caller_now(&self, token: Option<MetadataValue<Ascii>>) -> Result<Caller, Status> {
        let state = self.auth().state();
        if !state.enabled {
            return Ok(Caller { user: None, token });
        }
        let Some(t) = &token else {
            return Err(EtcdError::AUTH_USER_EMPTY.to_status());
        };
        let ttl = Duration::from_secs(self.inner.auth_token_ttl_secs);
        let user = t
            .to_str()
            .ok()
            .and_then(|t| self.auth().tokens.user_of(t, ttl))
            .filter(|u| state.users.contains_key(u))
            .ok_or_else(|| EtcdError::AUTH_INVALID_TOKEN.to_status())?;
        Ok(Caller {
            user: Some(user),
            token,
        })
    }

    /// Runs `check` on this member's auth state; when it refuses, runs it
    /// once more after a read barrier (a grant acknowledged through
    /// another member may not be applied here yet), so that a refusal
    /// reflects every change committed before the request arrived.
    async fn checked_twice<F>(&self, check: F) -> Result<(), Status>
    where
        F: Fn(&ApiContext) -> Result<(), Status>,
    {
        if check(self).is_ok() {
            return Ok(());
        }
        self.read_barrier().await?;
        check(self)
    }

    /// Refuses a caller without role `root` (while auth is enabled).
    pub(crate) async fn require_root(&self, caller: &Caller) -> Result<(), Status> {
        let Some(u) = &caller.user else {
            return Ok(());
        };
        self.checked_twice(|ctx| match ctx.auth().state().is_root(u) {
            true => Ok(()),
            false => Err(denied()),
        })
        .await
    }

    /// Refuses a caller that may not read `[key, range_end)`.
    pub(crate) async fn require_read(
        &self,
        caller: &Caller,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Status> {
        let Some(u) = &caller.user else {
            return Ok(());
        };
        self.checked_twice(
            |ctx| match check::range_ok(&ctx.auth().state(), u, key, range_end) {
                true => Ok(()),
                false => Err(denied()),
            },
        )
        .await
    }

    /// Checks that the caller may make the write `req` (on this member's
    /// state) and wraps it so that the state machine checks again at
    /// apply.
    pub(crate) async fn as_user(&self, caller: &Caller, req: Request) -> Result<Request, Status> {
        let user = caller.user.clone().unwrap_or_default();
        if caller.user.is_some() {
            self.checked_twice(|ctx| {
                let state = ctx.auth().state();
                let store = ctx.store();
                let lease_keys = |id| store.lease_keys(id);
                check::check_write(&state, &user, &req, &lease_keys)
                    .map_err(|e| e.to_status())?
                    .map_err(EtcdError::to_status)
            })
            .await?;
        }
        Ok(Request::AsUser {
            user,
            request: Box::new(req),
        })
    }
}

/// Response messages of the Auth service (all carry a header).
macro_rules! auth_has_header {
    ($($t:ty),* $(,)?) => {
        $(impl super::HasHeader for $t {
            fn header_mut(&mut self) -> &mut Option<pb::ResponseHeader> {
                &mut self.header
            }
        })*
    };
}

auth_has_header!(
    pb::AuthEnableResponse,
    pb::AuthDisableResponse,
    pb::AuthStatusResponse,
    pb::AuthenticateResponse,
    pb::AuthUserAddResponse,
    pb::AuthUserGetResponse,
    pb::AuthUserListResponse,
    pb::AuthUserDeleteResponse,
    pb::AuthUserChangePasswordResponse,
    pb::AuthUserGrantRoleResponse,
    pb::AuthUserRevokeRoleResponse,
    pb::AuthRoleAddResponse,
    pb::AuthRoleGetResponse,
    pb::AuthRoleListResponse,
    pb::AuthRoleDeleteResponse,
    pb::AuthRoleGrantPermissionResponse,
    pb::AuthRoleRevokePermissionResponse,
);

/// The Auth service of one member.
#[derive(Debug, Clone)]
pub(crate) struct AuthService {
    ctx: ApiContext,
}

impl AuthService {
    pub(crate) fn new(ctx: ApiContext) -> AuthService {
        AuthService { ctx }
    }

    /// Checks that the caller of `req` may manage users and roles.
    async fn admin<T>(&self, req: &GrpcRequest<T>) -> Result<Caller, Status> {
        let caller = self.ctx.caller(req).await?;
        self.ctx.require_root(&caller).await?;
        Ok(caller)
    }

    async fn change<T: prost::Message + Default + super::HasHeader>(
        &self,
        cmd: AuthCommand,
    ) -> Result<GrpcResponse<T>, Status> {
        self.ctx
            .propose(Request::Auth(cmd))
            .await
            .map(GrpcResponse::new)
    }

    /// bcrypt hash of `password` (off the async workers: it is slow on
    /// purpose).
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.ctx.inner.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("hashing task failed: {e}")))?
            .map_err(|e| Status::internal(format!("bcrypt: {e}")))
    }

    /// A reply read from this member's applied state, after a read
    /// barrier (so it reflects every change acknowledged before).
    async fn read<T: super::HasHeader>(&self, mut resp: T) -> Result<GrpcResponse<T>, Status> {
        let rev = self.ctx.store().current_revision();
        self.ctx.fill_header(&mut resp, Some(rev));
        Ok(GrpcResponse::new(resp))
    }
}

/// A fresh simple token: random letters, as etcd's, plus a dot and a
/// random number.
fn new_token() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let letters = Alphanumeric.sample_string(&mut rng, 16);
    format!("{letters}.{}", rng.gen::<u32>())
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: GrpcRequest<pb::AuthEnableRequest>,
    ) -> Result<GrpcResponse<pb::AuthEnableResponse>, Status> {
        self.admin(&request).await?;
        self.change(AuthCommand::Enable).await
    }

    async fn auth_disable(
        &self,
        request: GrpcRequest<pb::AuthDisableRequest>,
    ) -> Result<GrpcResponse<pb::AuthDisableResponse>, Status> {
        self.admin(&request).await?;
        self.change(AuthCommand::Disable).await
    }

    async fn auth_status(
        &self,
        request: GrpcRequest<pb::AuthStatusRequest>,
    ) -> Result<GrpcResponse<pb::AuthStatusResponse>, Status> {
        self.ctx.caller(&request).await?;
        self.ctx.read_barrier().await?;
        let state = self.ctx.auth().state();
        self.read(pb::AuthStatusResponse {
            header: None,
            enabled: state.enabled,
            auth_revision: state.revision,
        })
        .await
    }

    async fn authenticate(
        &self,
        request: GrpcRequest<pb::AuthenticateRequest>,
    ) -> Result<GrpcResponse<pb::AuthenticateResponse>, Status> {
        let req = request.into_inner();
        // As etcd: the password is checked against the users as of a
        // linearizable point (a user just added through another member
        // can log in here).
        self.ctx.read_barrier().await?;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let state = self.ctx.auth().state();
            if !state.enabled {
                return Err(EtcdError::AUTH_NOT_ENABLED.to_status());
            }
            let hash = match state.users.get(&req.name) {
                None => return Err(EtcdError::AUTH_FAILED.to_status()),
                Some(u) => u
                    .password_hash
                    .clone()
                    .ok_or_else(|| EtcdError::AUTH_NO_PASSWORD_USER.to_status())?,
            };
            let password = req.password.clone();
            let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
                .await
                .map_err(|e| Status::internal(format!("password check failed: {e}")))?
                .unwrap_or(false);
            if !ok {
                return Err(EtcdError::AUTH_FAILED.to_status());
            }
            let cmd = AuthCommand::Authenticate {
                name: req.name.clone(),
                token: new_token(),
                auth_revision: state.revision,
                issued_at_ms: crate::auth::tokens::now_ms(),
            };
            match self.change(cmd).await {
                Err(s) if s.message() == AUTH_STALE_MESSAGE => continue,
                r => return r,
            }
        }
        Err(EtcdError::REQUEST_TIMEOUT.to_status())
    }

    async fn user_add(
        &self,
        request: GrpcRequest<pb::AuthUserAddRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserAddResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::AUTH_USER_EMPTY.to_status());
        }
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        let password_hash = if no_password {
            None
        } else if !req.hashed_password.is_empty() {
            Some(req.hashed_password)
        } else {
            Some(self.hash(req.password).await?)
        };
        self.change(AuthCommand::UserAdd {
            name: req.name,
            password_hash,
        })
        .await
    }

    async fn user_get(
        &self,
        request: GrpcRequest<pb::AuthUserGetRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserGetResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        if caller.user.as_deref() != Some(req.name.as_str()) {
            self.ctx.require_root(&caller).await?;
        }
        self.ctx.read_barrier().await?;
        let state = self.ctx.auth().state();
        let user = state
            .users
            .get(&req.name)
            .ok_or_else(|| EtcdError::AUTH_USER_NOT_FOUND.to_status())?;
        self.read(pb::AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
        .await
    }

    async fn user_list(
        &self,
        request: GrpcRequest<pb::AuthUserListRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserListResponse>, Status> {
        self.admin(&request).await?;
        self.ctx.read_barrier().await?;
        let state = self.ctx.auth().state();
        self.read(pb::AuthUserListResponse {
            header: None,
            users: state.users.keys().cloned().collect(),
        })
        .await
    }

    async fn user_delete(
        &self,
        request: GrpcRequest<pb::AuthUserDeleteRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserDeleteResponse>, Status> {
        self.admin(&request).await?;
        let name = request.into_inner().name;
        self.change(AuthCommand::UserDelete { name }).await
    }

    async fn user_change_password(
        &self,
        request: GrpcRequest<pb::AuthUserChangePasswordRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserChangePasswordResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        self.ctx.read_barrier().await?;
        if !self.ctx.auth().state().users.contains_key(&req.name) {
            return Err(EtcdError::AUTH_USER_NOT_FOUND.to_status());
        }
        let password_hash = if req.hashed_password.is_empty() {
            self.hash(req.password).await?
        } else {
            req.hashed_password
        };
        self.change(AuthCommand::UserChangePassword {
            name: req.name,
            password_hash,
        })
        .await
    }

    async fn user_grant_role(
        &self,
        request: GrpcRequest<pb::AuthUserGrantRoleRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserGrantRoleResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        self.change(AuthCommand::UserGrantRole {
            user: req.user,
            role: req.role,
        })
        .await
    }

    async fn user_revoke_role(
        &self,
        request: GrpcRequest<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<GrpcResponse<pb::AuthUserRevokeRoleResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        self.change(AuthCommand::UserRevokeRole {
            name: req.name,
            role: req.role,
        })
        .await
    }

    async fn role_add(
        &self,
        request: GrpcRequest<pb::AuthRoleAddRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleAddResponse>, Status> {
        self.admin(&request).await?;
        let name = request.into_inner().name;
        self.change(AuthCommand::RoleAdd { name }).await
    }

    async fn role_get(
        &self,
        request: GrpcRequest<pb::AuthRoleGetRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleGetResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let role = request.into_inner().role;
        let holds = caller.user.as_ref().is_some_and(|u| {
            self.ctx
                .auth()
                .state()
                .users
                .get(u)
                .is_some_and(|u| u.roles.contains(&role))
        });
        if !holds {
            self.ctx.require_root(&caller).await?;
        }
        self.ctx.read_barrier().await?;
        let state = self.ctx.auth().state();
        let r = state
            .roles
            .get(&role)
            .ok_or_else(|| EtcdError::AUTH_ROLE_NOT_FOUND.to_status())?;
        let perm = r
            .perms
            .iter()
            .map(|p| authpb::Permission {
                perm_type: p.kind.to_wire(),
                key: p.key.clone().into(),
                range_end: p.range_end.clone().into(),
            })
            .collect();
        self.read(pb::AuthRoleGetResponse { header: None, perm })
            .await
    }

    async fn role_list(
        &self,
        request: GrpcRequest<pb::AuthRoleListRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleListResponse>, Status> {
        self.admin(&request).await?;
        self.ctx.read_barrier().await?;
        let state = self.ctx.auth().state();
        self.read(pb::AuthRoleListResponse {
            header: None,
            roles: state.roles.keys().cloned().collect(),
        })
        .await
    }

    async fn role_delete(
        &self,
        request: GrpcRequest<pb::AuthRoleDeleteRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleDeleteResponse>, Status> {
        self.admin(&request).await?;
        let role = request.into_inner().role;
        self.change(AuthCommand::RoleDelete { role }).await
    }

    async fn role_grant_permission(
        &self,
        request: GrpcRequest<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleGrantPermissionResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        let p = req
            .perm
            .ok_or_else(|| Status::invalid_argument("etcdserver: permission is not provided"))?;
        let kind = PermKind::from_wire(p.perm_type).ok_or_else(|| {
            Status::invalid_argument(format!("sett: unknown permission type {}", p.perm_type))
        })?;
        self.change(AuthCommand::RoleGrantPermission {
            name: req.name,
            perm: Perm {
                kind,
                key: p.key.to_vec(),
                range_end: p.range_end.to_vec(),
            },
        })
        .await
    }

    async fn role_revoke_permission(
        &self,
        request: GrpcRequest<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<GrpcResponse<pb::AuthRoleRevokePermissionResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        self.change(AuthCommand::RoleRevokePermission {
            role: req.role,
            key: req.key.to_vec(),
            range_end: req.range_end.to_vec(),
        })
        .await
    }
}
