//! Errors of the MVCC layer: etcd's client-visible errors (a gRPC code plus
//! the exact message string etcd clients match on) kept apart from storage
//! failures. Conversion to `tonic::Status` happens only at the gRPC edge
//! ([`MvccError::to_status`]).

/// One of etcd's client-visible errors: the gRPC code and the exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdError {
    /// gRPC status code etcd answers with.
    pub code: tonic::Code,
    /// The message, byte for byte as etcd sends it.
    pub message: &'static str,
}

impl EtcdError {
    const fn new(code: tonic::Code, message: &'static str) -> EtcdError {
        EtcdError { code, message }
    }

    /// Empty key in a Range, Put, DeleteRange or Compare.
    pub const EMPTY_KEY: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    pub const KEY_NOT_FOUND: EtcdError =
        EtcdError::new(tonic::Code::InvalidArgument, "etcdserver: key not found");
    /// `ignore_value` together with a non-empty value.
    pub const VALUE_PROVIDED: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    /// `ignore_lease` together with a non-zero lease.
    pub const LEASE_PROVIDED: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: lease is provided",
    );
    /// More than the allowed operations in one txn (or one branch).
    pub const TOO_MANY_OPS: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    /// One key written twice by one txn.
    pub const DUPLICATE_KEY: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    /// Unknown sort order or target.
    pub const INVALID_SORT_OPTION: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: invalid sort option",
    );
    /// A revision at or below the compaction point was asked for.
    pub const COMPACTED: EtcdError = EtcdError::new(
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    /// A revision above the current one was asked for.
    pub const FUTURE_REV: EtcdError = EtcdError::new(
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    /// Unknown lease ID.
    pub const LEASE_NOT_FOUND: EtcdError = EtcdError::new(
        tonic::Code::NotFound,
        "etcdserver: requested lease not found",
    );
    /// A request whose encoding exceeds `--max-request-bytes`.
    pub const REQUEST_TOO_LARGE: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    /// No leader is known (election in progress, or no quorum).
    pub const NO_LEADER: EtcdError =
        EtcdError::new(tonic::Code::Unavailable, "etcdserver: no leader");
    /// The request was not committed, or not confirmed, in time.
    pub const REQUEST_TIMEOUT: EtcdError =
        EtcdError::new(tonic::Code::Unavailable, "etcdserver: request timed out");
    /// The leader changed while the request was in flight.
    pub const LEADER_CHANGED: EtcdError =
        EtcdError::new(tonic::Code::Unavailable, "etcdserver: leader changed");
    /// The member is stopping.
    pub const STOPPED: EtcdError =
        EtcdError::new(tonic::Code::Unavailable, "etcdserver: server stopped");
    /// A write while the NOSPACE alarm is raised.
    pub const NO_SPACE: EtcdError = EtcdError::new(
        tonic::Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    /// A membership change that cannot be made safely now.
    pub const UNHEALTHY_CLUSTER: EtcdError =
        EtcdError::new(tonic::Code::Unavailable, "etcdserver: unhealthy cluster");
    /// MemberAdd of a member whose id is taken.
    pub const MEMBER_EXISTS: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: member ID already exist",
    );
    /// MemberAdd with peer URLs another member has.
    pub const PEER_URL_EXISTS: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    );
    /// An unknown member id.
    pub const MEMBER_NOT_FOUND: EtcdError =
        EtcdError::new(tonic::Code::NotFound, "etcdserver: member not found");
    /// MemberPromote of a voting member.
    pub const MEMBER_NOT_LEARNER: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    );
    /// MemberPromote of a learner far behind the leader.
    pub const LEARNER_NOT_READY: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    /// Peer URLs that do not parse.
    pub const MEMBER_BAD_URLS: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    );
    /// A lease TTL above etcd's maximum.
    pub const LEASE_TTL_TOO_LARGE: EtcdError =
        EtcdError::new(tonic::Code::OutOfRange, "etcdserver: too large lease TTL");
    /// A lease with this ID already exists.
    pub const LEASE_EXISTS: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );

    // Authentication (etcd's auth store errors).
    /// AuthEnable without user `root`.
    pub const AUTH_ROOT_USER_NOT_EXIST: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: root user does not exist",
    );
    /// AuthEnable while user `root` lacks role `root`.
    pub const AUTH_ROOT_ROLE_NOT_EXIST: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: root user does not have root role",
    );
    /// UserAdd of an existing user.
    pub const AUTH_USER_ALREADY_EXIST: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: user name already exists",
    );
    /// An empty user name, or a request without a token while auth is
    /// enabled.
    pub const AUTH_USER_EMPTY: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    /// Unknown user.
    pub const AUTH_USER_NOT_FOUND: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: user name not found",
    );
    /// RoleAdd of an existing role.
    pub const AUTH_ROLE_ALREADY_EXIST: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: role name already exists",
    );
    /// Unknown role.
    pub const AUTH_ROLE_NOT_FOUND: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: role name not found",
    );
    /// An empty role name.
    pub const AUTH_ROLE_EMPTY: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: role name is empty",
    );
    /// Wrong user or password (or a user without password).
    pub const AUTH_FAILED: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password",
    );
    /// Authenticate as a user added with `no_password` (etcd 3.4 sends
    /// its internal error untranslated, hence `Unknown`).
    pub const AUTH_NO_PASSWORD_USER: EtcdError = EtcdError::new(
        tonic::Code::Unknown,
        "auth: authentication failed, password was given for no password user",
    );
    /// The user lacks the permission the request needs.
    pub const AUTH_PERMISSION_DENIED: EtcdError = EtcdError::new(
        tonic::Code::PermissionDenied,
        "etcdserver: permission denied",
    );
    /// UserRevokeRole of a role the user does not hold.
    pub const AUTH_ROLE_NOT_GRANTED: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: role is not granted to the user",
    );
    /// RoleRevokePermission of a permission the role does not hold.
    pub const AUTH_PERMISSION_NOT_GRANTED: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: permission is not granted to the role",
    );
    /// Authenticate while auth is disabled.
    pub const AUTH_NOT_ENABLED: EtcdError = EtcdError::new(
        tonic::Code::FailedPrecondition,
        "etcdserver: authentication is not enabled",
    );
    /// A token this member does not know (expired, or issued before it
    /// started).
    pub const AUTH_INVALID_TOKEN: EtcdError = EtcdError::new(
        tonic::Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    /// Deleting user or role `root`, or revoking role `root` from user
    /// `root`, while auth is enabled.
    pub const AUTH_INVALID_MGMT: EtcdError = EtcdError::new(
        tonic::Code::InvalidArgument,
        "etcdserver: invalid auth management",
    );
}

impl EtcdError {
    /// The status to send to the client.
    pub fn to_status(self) -> tonic::Status {
        tonic::Status::new(self.code, self.message)
    }
}

/// Error of an MVCC operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MvccError {
    /// A client-visible etcd error; nothing was written.
    #[error("{}", .0.message)]
    Etcd(EtcdError),
    /// The engine failed (I/O, corruption reported by the engine, closed).
    #[error("storage: {0}")]
    Storage(#[from] sett_engine::Error),
    /// Bytes in the MVCC keyspace (or a snapshot chunk) that do not decode.
    #[error("corrupt mvcc data: {0}")]
    Corrupt(String),
}

impl From<EtcdError> for MvccError {
    fn from(e: EtcdError) -> MvccError {
        MvccError::Etcd(e)
    }
}

impl MvccError {
    /// The etcd error, if this is one.
    pub fn etcd(&self) -> Option<EtcdError> {
        match self {
            MvccError::Etcd(e) => Some(*e),
            _ => None,
        }
    }

    /// The gRPC code to answer with.
    pub fn code(&self) -> tonic::Code {
        match self {
            MvccError::Etcd(e) => e.code,
            MvccError::Storage(_) | MvccError::Corrupt(_) => tonic::Code::Internal,
        }
    }

    /// The status to send to the client.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

/// Result of an MVCC operation.
pub type Result<T> = std::result::Result<T, MvccError>;
