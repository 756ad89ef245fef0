//! Payload encoding of the Raft transport and the addressing check.
//!
//! openraft's messages, responses and errors travel as postcard bytes
//! (serde derives of openraft's `serde` feature); the encoding is private
//! to one sett release line.

use crate::raft::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sett_proto::sett::raft::v1::PeerHeader;
use tonic::Status;

/// Largest gRPC message a member sends or accepts on the Raft transport,
/// in bytes: AppendEntries batches may carry many large requests.
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;

/// Who a member is on the transport: its cluster and its node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id every member of the cluster shares.
    pub cluster_id: u64,
    /// This member's Raft node id.
    pub node_id: NodeId,
}

impl Identity {
    /// The header of a message from this member to `to`.
    pub fn header_to(&self, to: NodeId) -> PeerHeader {
        PeerHeader {
            cluster_id: self.cluster_id,
            from: self.node_id,
            to,
        }
    }

    /// Checks that `header` comes from this member's cluster and is meant
    /// for this member; returns the sender's id.
    pub fn check(&self, header: Option<&PeerHeader>) -> Result<NodeId, Status> {
        let h = header.ok_or_else(|| Status::invalid_argument("missing peer header"))?;
        if h.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: message for cluster {:x}, this member is in cluster {:x}",
                h.cluster_id, self.cluster_id
            )));
        }
        if h.to != self.node_id {
            return Err(Status::failed_precondition(format!(
                "member id mismatch: message for member {:x}, this member is {:x}",
                h.to, self.node_id
            )));
        }
        Ok(h.from)
    }
}

/// Encodes a payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a payload received from a peer (server side: a bad payload is
/// the sender's fault, `INVALID_ARGUMENT`).
pub fn decode_request<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    postcard::from_bytes(bytes).map_err(|e| Status::invalid_argument(format!("bad {what}: {e}")))
}

/// Encodes a reply payload (server side: failure is an internal error).
pub fn encode_reply<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, Status> {
    encode(value).map_err(|e| Status::internal(format!("cannot encode {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_refuses_other_cluster_and_member() {
        let me = Identity {
            cluster_id: 7,
            node_id: 2,
        };
        let from = Identity {
            cluster_id: 7,
            node_id: 1,
        };
        assert_eq!(me.check(Some(&from.header_to(2))).unwrap(), 1);
        let wrong_member = me.check(Some(&from.header_to(3))).unwrap_err();
        assert_eq!(wrong_member.code(), tonic::Code::FailedPrecondition);
        let other = Identity {
            cluster_id: 8,
            node_id: 1,
        };
        let wrong_cluster = me.check(Some(&other.header_to(2))).unwrap_err();
        assert_eq!(wrong_cluster.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            me.check(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
