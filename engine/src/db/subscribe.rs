//! Change subscriptions: callers receive the writes under the prefixes
//! they watch, after each commit group is applied.

use super::{DbInner, WriteRequest};

impl DbInner {
    /// Called by the commit thread after `group` is applied and visible.
    pub(crate) fn publish(&self, _group: &[WriteRequest]) {}
}
