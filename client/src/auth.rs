//! Credentials and the token every call carries once the client has
//! authenticated (etcd's simple tokens, in gRPC metadata `token`).
//!
//! [`Chan`] is the channel type the service handles call through: a
//! [`Channel`] whose requests get the current token added by
//! [`TokenInterceptor`]. The token is shared by all clones of a
//! [`crate::Client`] and replaced when the client authenticates again
//! (after the server answered `etcdserver: invalid auth token`).

use std::sync::{Arc, RwLock};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The gRPC metadata key of the token.
const TOKEN_METADATA: &str = "token";
/// etcd's message for a token the server does not know (expired, or
/// issued before the member restarted).
pub(crate) const INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";

/// etcd's message for Authenticate while authentication is disabled.
pub(crate) const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

/// A channel whose calls carry the client's token.
pub type Chan = InterceptedService<Channel, TokenInterceptor>;

/// Adds the current token (if any) to each request.
#[derive(Debug, Clone, Default)]
pub struct TokenInterceptor {
    token: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

impl TokenInterceptor {
    /// Replaces the token (`None`: calls carry none).
    pub fn set(&self, token: Option<MetadataValue<Ascii>>) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// The token calls carry now.
    pub fn get(&self) -> Option<MetadataValue<Ascii>> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `channel` with this interceptor.
    pub fn wrap(&self, channel: Channel) -> Chan {
        InterceptedService::new(channel, self.clone())
    }
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = self.get() {
            req.metadata_mut().insert(TOKEN_METADATA, t);
        }
        Ok(req)
    }
}

/// Whether `status` says the token is unknown to the server.
pub(crate) fn is_invalid_token(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unauthenticated && status.message() == INVALID_AUTH_TOKEN
}
