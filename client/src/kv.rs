//! The KV service: [`Kv::get`], [`Kv::put`], [`Kv::delete`], [`Kv::txn`]
//! (with the [`TxnBuilder`], [`Compare`] and [`Op`] helpers) and
//! [`Kv::compact`]. Answers are the protobuf responses.
//!
//! Ranges follow etcd's conventions: an empty `range_end` means the key
//! alone, `"\0"` every key from `key` on, else `[key, range_end)`.

use crate::client::Client;
use crate::error::Error;
use crate::retry::Kind;
use sett_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sett_proto::etcdserverpb::kv_client::KvClient;
use sett_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

/// The end of the range of every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): `prefix` with its last byte below 0xff
/// incremented and the rest dropped; `"\0"` (every key) when there is no
/// such byte.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Which keys an operation covers beside its key, shared by the option
/// types.
fn range_end_of(
    key: &[u8],
    prefix: bool,
    from_key: bool,
    range_end: &Option<Vec<u8>>,
) -> Result<Vec<u8>, Error> {
    match (prefix, from_key, range_end) {
        (false, false, None) => Ok(Vec::new()),
        (true, false, None) => Ok(prefix_range_end(key)),
        (false, true, None) => Ok(vec![0]),
        (false, false, Some(end)) => Ok(end.clone()),
        _ => Err(Error::InvalidArgument(
            "at most one of prefix, from_key and range_end may be set".to_owned(),
        )),
    }
}

/// Options of [`Kv::get`]; the default reads the key alone,
/// linearizably, at the current revision.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Every key starting with the key.
    pub prefix: bool,
    /// Every key from the key on.
    pub from_key: bool,
    /// Keys in `[key, range_end)`.
    pub range_end: Option<Vec<u8>>,
    /// Read at this revision (0: the current one).
    pub revision: i64,
    /// At most this many keys (0: all).
    pub limit: i64,
    /// Sort order (none: key order).
    pub sort_order: SortOrder,
    /// What to sort by.
    pub sort_target: SortTarget,
    /// Keys without values.
    pub keys_only: bool,
    /// Only the count.
    pub count_only: bool,
    /// Serve from the member's local state without a quorum round.
    pub serializable: bool,
    /// Only keys modified at or after this revision (0: no bound).
    pub min_mod_revision: i64,
    /// Only keys modified at or before this revision (0: no bound).
    pub max_mod_revision: i64,
    /// Only keys created at or after this revision (0: no bound).
    pub min_create_revision: i64,
    /// Only keys created at or before this revision (0: no bound).
    pub max_create_revision: i64,
}

impl GetOptions {
    /// The defaults.
    pub fn new() -> GetOptions {
        GetOptions::default()
    }

    /// Every key starting with the key.
    pub fn with_prefix(mut self) -> GetOptions {
        self.prefix = true;
        self
    }

    /// Every key from the key on.
    pub fn with_from_key(mut self) -> GetOptions {
        self.from_key = true;
        self
    }

    /// Keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> GetOptions {
        self.range_end = Some(end.into());
        self
    }

    /// Reads at `revision`.
    pub fn with_revision(mut self, revision: i64) -> GetOptions {
        self.revision = revision;
        self
    }

    /// At most `limit` keys.
    pub fn with_limit(mut self, limit: i64) -> GetOptions {
        self.limit = limit;
        self
    }

    /// Sorted by `target` in `order`.
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> GetOptions {
        self.sort_target = target;
        self.sort_order = order;
        self
    }

    /// Keys without values.
    pub fn with_keys_only(mut self) -> GetOptions {
        self.keys_only = true;
        self
    }

    /// Only the count.
    pub fn with_count_only(mut self) -> GetOptions {
        self.count_only = true;
        self
    }

    /// A serializable (local) read.
    pub fn with_serializable(mut self) -> GetOptions {
        self.serializable = true;
        self
    }

    /// The range request for `key` with these options.
    pub fn to_request(&self, key: impl Into<Vec<u8>>) -> Result<RangeRequest, Error> {
        let key = key.into();
        let range_end = range_end_of(&key, self.prefix, self.from_key, &self.range_end)?;
        Ok(RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            limit: self.limit,
            revision: self.revision,
            sort_order: self.sort_order as i32,
            sort_target: self.sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        })
    }
}

/// Options of [`Kv::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Attach the key to this lease (0: none).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

impl PutOptions {
    /// The defaults.
    pub fn new() -> PutOptions {
        PutOptions::default()
    }

    /// Attaches the key to `lease`.
    pub fn with_lease(mut self, lease: i64) -> PutOptions {
        self.lease = lease;
        self
    }

    /// Returns the previous key-value.
    pub fn with_prev_kv(mut self) -> PutOptions {
        self.prev_kv = true;
        self
    }

    /// Keeps the current value (updates only the lease).
    pub fn with_ignore_value(mut self) -> PutOptions {
        self.ignore_value = true;
        self
    }

    /// Keeps the current lease (updates only the value).
    pub fn with_ignore_lease(mut self) -> PutOptions {
        self.ignore_lease = true;
        self
    }

    /// The put request for `key = value` with these options.
    pub fn to_request(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into().into(),
            value: value.into().into(),
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

/// Options of [`Kv::delete`]; the default deletes the key alone.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Every key starting with the key.
    pub prefix: bool,
    /// Every key from the key on.
    pub from_key: bool,
    /// Keys in `[key, range_end)`.
    pub range_end: Option<Vec<u8>>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

impl DeleteOptions {
    /// The defaults.
    pub fn new() -> DeleteOptions {
        DeleteOptions::default()
    }

    /// Every key starting with the key.
    pub fn with_prefix(mut self) -> DeleteOptions {
        self.prefix = true;
        self
    }

    /// Every key from the key on.
    pub fn with_from_key(mut self) -> DeleteOptions {
        self.from_key = true;
        self
    }

    /// Keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> DeleteOptions {
        self.range_end = Some(end.into());
        self
    }

    /// Returns the deleted key-values.
    pub fn with_prev_kv(mut self) -> DeleteOptions {
        self.prev_kv = true;
        self
    }

    /// The delete request for `key` with these options.
    pub fn to_request(&self, key: impl Into<Vec<u8>>) -> Result<DeleteRangeRequest, Error> {
        let key = key.into();
        let range_end = range_end_of(&key, self.prefix, self.from_key, &self.range_end)?;
        Ok(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: self.prev_kv,
        })
    }
}

/// Builds the compares of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Compare;

impl Compare {
    fn make(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        target: CompareTarget,
        value: TargetUnion,
    ) -> sett_proto::etcdserverpb::Compare {
        sett_proto::etcdserverpb::Compare {
            result: result as i32,
            target: target as i32,
            key: key.into().into(),
            range_end: Default::default(),
            target_union: Some(value),
        }
    }

    /// Compares the value of `key` with `value`.
    pub fn value(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        value: impl Into<Vec<u8>>,
    ) -> sett_proto::etcdserverpb::Compare {
        let v = TargetUnion::Value(value.into().into());
        Compare::make(key, result, CompareTarget::Value, v)
    }

    /// Compares the version of `key` (0: absent) with `version`.
    pub fn version(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        version: i64,
    ) -> sett_proto::etcdserverpb::Compare {
        let v = TargetUnion::Version(version);
        Compare::make(key, result, CompareTarget::Version, v)
    }

    /// Compares the create revision of `key` with `revision`.
    pub fn create_revision(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        revision: i64,
    ) -> sett_proto::etcdserverpb::Compare {
        let v = TargetUnion::CreateRevision(revision);
        Compare::make(key, result, CompareTarget::Create, v)
    }

    /// Compares the mod revision of `key` with `revision`.
    pub fn mod_revision(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        revision: i64,
    ) -> sett_proto::etcdserverpb::Compare {
        let v = TargetUnion::ModRevision(revision);
        Compare::make(key, result, CompareTarget::Mod, v)
    }

    /// Compares the lease of `key` with `lease`.
    pub fn lease(
        key: impl Into<Vec<u8>>,
        result: CompareResult,
        lease: i64,
    ) -> sett_proto::etcdserverpb::Compare {
        let v = TargetUnion::Lease(lease);
        Compare::make(key, result, CompareTarget::Lease, v)
    }
}

/// Builds the operations of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Op;

impl Op {
    /// A range read.
    pub fn get(key: impl Into<Vec<u8>>, opts: &GetOptions) -> Result<RequestOp, Error> {
        Ok(RequestOp {
            request: Some(Request::RequestRange(opts.to_request(key)?)),
        })
    }

    /// A put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, opts: &PutOptions) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(opts.to_request(key, value))),
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<Vec<u8>>, opts: &DeleteOptions) -> Result<RequestOp, Error> {
        Ok(RequestOp {
            request: Some(Request::RequestDeleteRange(opts.to_request(key)?)),
        })
    }

    /// A nested transaction.
    pub fn txn(txn: impl Into<TxnRequest>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(txn.into())),
        }
    }
}

/// A transaction being built: if every compare holds, the `and_then`
/// operations run, else the `or_else` ones.
///
/// ```
/// use sett_client::kv::{Compare, Op, PutOptions, TxnBuilder};
/// use sett_client::etcdserverpb::compare::CompareResult;
///
/// let txn = TxnBuilder::new()
///     .when([Compare::version("k", CompareResult::Equal, 0)])
///     .and_then([Op::put("k", "created", &PutOptions::new())]);
/// let request: sett_client::etcdserverpb::TxnRequest = txn.into();
/// assert_eq!(request.compare.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TxnBuilder {
    request: TxnRequest,
}

impl TxnBuilder {
    /// An empty transaction (no compares: the `and_then` branch runs).
    pub fn new() -> TxnBuilder {
        TxnBuilder::default()
    }

    /// Adds compares.
    pub fn when(
        mut self,
        compares: impl IntoIterator<Item = sett_proto::etcdserverpb::Compare>,
    ) -> TxnBuilder {
        self.request.compare.extend(compares);
        self
    }

    /// Adds operations run when every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = RequestOp>) -> TxnBuilder {
        self.request.success.extend(ops);
        self
    }

    /// Adds operations run when a compare fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = RequestOp>) -> TxnBuilder {
        self.request.failure.extend(ops);
        self
    }

    /// The request.
    pub fn build(self) -> TxnRequest {
        self.request
    }
}

impl From<TxnBuilder> for TxnRequest {
    fn from(b: TxnBuilder) -> TxnRequest {
        b.request
    }
}

/// Whether a transaction writes anything (in either branch, nested
/// transactions included).
fn txn_writes(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_) | Request::RequestDeleteRange(_)) => true,
            Some(Request::RequestTxn(t)) => txn_writes(t),
            Some(Request::RequestRange(_)) | None => false,
        })
}

/// Handle on the KV service of a [`Client`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Kv {
    client: Client,
}

impl Kv {
    pub(crate) fn new(client: Client) -> Kv {
        Kv { client }
    }

    /// Reads `key` (or the range the options name).
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        opts: GetOptions,
    ) -> Result<RangeResponse, Error> {
        self.range(opts.to_request(key)?).await
    }

    /// Runs a range request as given.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        self.client
            .call(Kind::Read, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).range(req).await }
            })
            .await
    }

    /// Puts `key = value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<PutResponse, Error> {
        let req = opts.to_request(key, value);
        self.client
            .call(Kind::Write, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).put(req).await }
            })
            .await
    }

    /// Deletes `key` (or the range the options name).
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        opts: DeleteOptions,
    ) -> Result<DeleteRangeResponse, Error> {
        let req = opts.to_request(key)?;
        self.client
            .call(Kind::Write, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).delete_range(req).await }
            })
            .await
    }

    /// Runs a transaction (a [`TxnBuilder`] or a `TxnRequest`). One that
    /// only reads is retried like a read, else like a mutation.
    pub async fn txn(&self, txn: impl Into<TxnRequest>) -> Result<TxnResponse, Error> {
        let req = txn.into();
        let kind = if txn_writes(&req) {
            Kind::Write
        } else {
            Kind::Read
        };
        self.client
            .call(kind, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).txn(req).await }
            })
            .await
    }

    /// Compacts the history before `revision`; `physical` waits until the
    /// compaction is applied to the store.
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<CompactionResponse, Error> {
        let req = CompactionRequest { revision, physical };
        self.client
            .call(Kind::Write, |ch| async move {
                KvClient::new(ch).compact(req).await
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    #[test]
    fn options_make_requests_and_refuse_contradictions() {
        let r = GetOptions::new().with_prefix().to_request("p/").unwrap();
        assert_eq!(&r.range_end[..], b"p0");
        let r = GetOptions::new().with_from_key().to_request("p").unwrap();
        assert_eq!(&r.range_end[..], b"\0");
        let bad = GetOptions::new().with_prefix().with_range_end("z");
        assert!(matches!(
            bad.to_request("a"),
            Err(Error::InvalidArgument(_))
        ));
        let d = DeleteOptions::new().with_prefix().with_prev_kv();
        let d = d.to_request("x/").unwrap();
        assert!(d.prev_kv);
        assert_eq!(&d.range_end[..], b"x0");
    }

    #[test]
    fn read_only_transactions_are_reads() {
        let read = TxnBuilder::new()
            .and_then([Op::get("a", &GetOptions::new()).unwrap()])
            .build();
        assert!(!txn_writes(&read));
        let nested = TxnBuilder::new()
            .or_else([Op::txn(TxnBuilder::new().and_then([Op::put(
                "a",
                "1",
                &PutOptions::new(),
            )]))])
            .build();
        assert!(txn_writes(&nested));
    }
}
