//! `auth enable|disable|status`, `user ...` and `role ...`, printed as
//! etcdctl 3.4 prints them (simple format).

use crate::conn::Conn;
use crate::kv::prefix_end;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sett_proto::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use sett_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};

/// etcd's message when enabling while `root` lacks role `root`.
const ROOT_ROLE_MISSING: &str = "etcdserver: root user does not have root role";
/// etcd's message for adding a role that exists.
const ROLE_EXISTS: &str = "etcdserver: role name already exists";

/// `auth ...`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Enables authentication (granting role root to user root if needed).
    Enable,
    /// Disables authentication.
    Disable,
    /// Shows whether authentication is enabled.
    Status,
}

/// `user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a new user (`NAME` or `NAME:PASSWORD`).
    Add(UserAddArgs),
    /// Gets detailed information of a user.
    Get {
        /// User name.
        name: String,
        /// Shows the permissions of the user's roles too.
        #[arg(long)]
        detail: bool,
    },
    /// Lists all users.
    List,
    /// Deletes a user.
    Delete {
        /// User name.
        name: String,
    },
    /// Changes the password of a user.
    Passwd {
        /// User name.
        name: String,
        /// The new password.
        #[arg(long)]
        new_user_password: String,
    },
    /// Grants a role to a user.
    GrantRole {
        /// User name.
        name: String,
        /// Role name.
        role: String,
    },
    /// Revokes a role from a user.
    RevokeRole {
        /// User name.
        name: String,
        /// Role name.
        role: String,
    },
}

/// `user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// `NAME` or `NAME:PASSWORD`.
    #[arg(value_name = "USER")]
    spec: String,
    /// The password (instead of `NAME:PASSWORD`).
    #[arg(long)]
    new_user_password: Option<String>,
    /// A user without password (cannot authenticate with one).
    #[arg(long)]
    no_password: bool,
}

/// `role ...`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Adds a new role.
    Add {
        /// Role name.
        name: String,
    },
    /// Gets detailed information of a role.
    Get {
        /// Role name.
        name: String,
    },
    /// Lists all roles.
    List,
    /// Deletes a role.
    Delete {
        /// Role name.
        name: String,
    },
    /// Grants a key permission (read, write or readwrite) to a role.
    GrantPermission(PermArgs),
    /// Revokes a key permission from a role.
    RevokePermission(RevokeArgs),
}

/// `role grant-permission ROLE TYPE KEY [END]`.
#[derive(Debug, Args)]
pub struct PermArgs {
    /// Role name.
    role: String,
    /// read, write or readwrite.
    perm_type: String,
    /// Key.
    key: String,
    /// Range end.
    range_end: Option<String>,
    /// Grants the permission on every key with the prefix KEY.
    #[arg(long)]
    prefix: bool,
    /// Grants the permission on every key from KEY on.
    #[arg(long)]
    from_key: bool,
}

/// `role revoke-permission ROLE KEY [END]`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Role name.
    role: String,
    /// Key.
    key: String,
    /// Range end.
    range_end: Option<String>,
    /// Revokes the permission on the prefix KEY.
    #[arg(long)]
    prefix: bool,
    /// Revokes the permission from KEY on.
    #[arg(long)]
    from_key: bool,
}

/// The range end of a permission argument.
fn range_end(key: &str, end: Option<&str>, prefix: bool, from_key: bool) -> Result<Vec<u8>> {
    match (end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) | (None, true, true) => {
            bail!("--prefix, --from-key and a range end exclude each other")
        }
        (Some(e), false, false) => Ok(e.as_bytes().to_vec()),
        (None, true, false) => Ok(prefix_end(key.as_bytes())),
        (None, false, true) => Ok(vec![0]),
        (None, false, false) => Ok(Vec::new()),
    }
}

/// Runs `auth ...`.
pub async fn auth(conn: &Conn, cmd: AuthCommand) -> Result<()> {
    match cmd {
        AuthCommand::Enable => {
            // As etcdctl: grant role root to user root if that is all that
            // is missing, then enable again.
            for _ in 0..2 {
                match conn
                    .call(conn.auth().auth_enable(AuthEnableRequest {}))
                    .await
                {
                    Ok(_) => {
                        println!("Authentication Enabled");
                        return Ok(());
                    }
                    Err(e) if e.to_string() == ROOT_ROLE_MISSING => {
                        let add = conn
                            .call(conn.auth().role_add(AuthRoleAddRequest {
                                name: "root".to_owned(),
                            }))
                            .await;
                        if let Err(e) = add {
                            if e.to_string() != ROLE_EXISTS {
                                return Err(e);
                            }
                        }
                        conn.call(conn.auth().user_grant_role(AuthUserGrantRoleRequest {
                            user: "root".to_owned(),
                            role: "root".to_owned(),
                        }))
                        .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            bail!("{ROOT_ROLE_MISSING}")
        }
        AuthCommand::Disable => {
            conn.call(conn.auth().auth_disable(AuthDisableRequest {}))
                .await?;
            println!("Authentication Disabled");
        }
        AuthCommand::Status => {
            let s = conn
                .call(conn.auth().auth_status(AuthStatusRequest {}))
                .await?;
            println!("Authentication Status: {}", s.enabled);
            println!("AuthRevision: {}", s.auth_revision);
        }
    }
    Ok(())
}

/// Prints a role's permissions as etcdctl does.
fn print_perms(perms: &[Permission]) {
    let show = |p: &Permission| {
        let key = String::from_utf8_lossy(&p.key).into_owned();
        let end = &p.range_end;
        if end.is_empty() {
            println!("\t{key}");
        } else if end[..] == [0] {
            println!("\t[{key}, <open ended>");
        } else {
            let e = String::from_utf8_lossy(end);
            if prefix_end(&p.key)[..] == end[..] {
                println!("\t[{key}, {e}) (prefix {key})");
            } else {
                println!("\t[{key}, {e})");
            }
        }
    };
    println!("KV Read:");
    perms
        .iter()
        .filter(|p| p.perm_type != PermType::Write as i32)
        .for_each(show);
    println!("KV Write:");
    perms
        .iter()
        .filter(|p| p.perm_type != PermType::Read as i32)
        .for_each(show);
}

/// Runs `user ...`.
pub async fn user(conn: &Conn, cmd: UserCommand) -> Result<()> {
    let a = || conn.auth();
    match cmd {
        UserCommand::Add(args) => {
            let (name, password) = match (args.spec.split_once(':'), args.new_user_password) {
                (Some(_), Some(_)) => {
                    bail!("give the password either as NAME:PASSWORD or --new-user-password")
                }
                (Some((n, p)), None) => (n.to_owned(), p.to_owned()),
                (None, Some(p)) => (args.spec.clone(), p),
                (None, None) if args.no_password => (args.spec.clone(), String::new()),
                (None, None) => bail!("no password: use NAME:PASSWORD or --new-user-password"),
            };
            if password.is_empty() && !args.no_password {
                bail!("empty password");
            }
            let req = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions {
                    no_password: args.no_password,
                }),
                hashed_password: String::new(),
            };
            conn.call(a().user_add(req)).await?;
            println!("User {name} created");
        }
        UserCommand::Get { name, detail } => {
            let resp = conn
                .call(a().user_get(AuthUserGetRequest { name: name.clone() }))
                .await?;
            println!("User: {name}");
            if detail {
                for role in &resp.roles {
                    let r = conn
                        .call(a().role_get(AuthRoleGetRequest { role: role.clone() }))
                        .await?;
                    println!();
                    println!("Role {role}");
                    print_perms(&r.perm);
                }
            } else {
                println!("Roles: {}", resp.roles.join(" "));
            }
        }
        UserCommand::List => {
            let resp = conn.call(a().user_list(AuthUserListRequest {})).await?;
            for u in resp.users {
                println!("{u}");
            }
        }
        UserCommand::Delete { name } => {
            conn.call(a().user_delete(AuthUserDeleteRequest { name: name.clone() }))
                .await?;
            println!("User {name} deleted");
        }
        UserCommand::Passwd {
            name,
            new_user_password,
        } => {
            let req = AuthUserChangePasswordRequest {
                name,
                password: new_user_password,
                hashed_password: String::new(),
            };
            conn.call(a().user_change_password(req)).await?;
            println!("Password updated");
        }
        UserCommand::GrantRole { name, role } => {
            let req = AuthUserGrantRoleRequest {
                user: name.clone(),
                role: role.clone(),
            };
            conn.call(a().user_grant_role(req)).await?;
            println!("Role {role} is granted to user {name}");
        }
        UserCommand::RevokeRole { name, role } => {
            let req = AuthUserRevokeRoleRequest {
                name: name.clone(),
                role: role.clone(),
            };
            conn.call(a().user_revoke_role(req)).await?;
            println!("Role {role} is revoked from user {name}");
        }
    }
    Ok(())
}

/// Runs `role ...`.
pub async fn role(conn: &Conn, cmd: RoleCommand) -> Result<()> {
    let a = || conn.auth();
    match cmd {
        RoleCommand::Add { name } => {
            conn.call(a().role_add(AuthRoleAddRequest { name: name.clone() }))
                .await?;
            println!("Role {name} created");
        }
        RoleCommand::Get { name } => {
            let r = conn
                .call(a().role_get(AuthRoleGetRequest { role: name.clone() }))
                .await?;
            println!("Role {name}");
            print_perms(&r.perm);
        }
        RoleCommand::List => {
            let resp = conn.call(a().role_list(AuthRoleListRequest {})).await?;
            for r in resp.roles {
                println!("{r}");
            }
        }
        RoleCommand::Delete { name } => {
            conn.call(a().role_delete(AuthRoleDeleteRequest { role: name.clone() }))
                .await?;
            println!("Role {name} deleted");
        }
        RoleCommand::GrantPermission(p) => {
            let perm_type = match p.perm_type.to_ascii_lowercase().as_str() {
                "read" => PermType::Read,
                "write" => PermType::Write,
                "readwrite" => PermType::Readwrite,
                other => bail!("invalid permission type {other:?}: read, write or readwrite"),
            };
            let end = range_end(&p.key, p.range_end.as_deref(), p.prefix, p.from_key)?;
            let req = AuthRoleGrantPermissionRequest {
                name: p.role.clone(),
                perm: Some(Permission {
                    perm_type: perm_type as i32,
                    key: p.key.into_bytes().into(),
                    range_end: end.into(),
                }),
            };
            conn.call(a().role_grant_permission(req)).await?;
            println!("Role {} updated", p.role);
        }
        RoleCommand::RevokePermission(p) => {
            let end = range_end(&p.key, p.range_end.as_deref(), p.prefix, p.from_key)?;
            let req = AuthRoleRevokePermissionRequest {
                role: p.role.clone(),
                key: p.key.clone().into_bytes().into(),
                range_end: end.clone().into(),
            };
            conn.call(a().role_revoke_permission(req)).await?;
            if end.is_empty() {
                println!(
                    "Permission of key {} is revoked from role {}",
                    p.key, p.role
                );
            } else {
                println!(
                    "Permission of range [{}, {}) is revoked from role {}",
                    p.key,
                    String::from_utf8_lossy(&end),
                    p.role
                );
            }
        }
    }
    Ok(())
}
