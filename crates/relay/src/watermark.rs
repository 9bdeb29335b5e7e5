//! Watermarks: how a query side fed through Kafka honours read-your-writes tokens
//! (DESIGN §4.3).
//!
//! A consistency token is a global position of the event store, but a Kafka consumer
//! knows partition offsets, not positions: it cannot tell from `order-events` alone
//! whether every event up to position P has reached it (the events of P may sit in a
//! partition it has not read yet). So, in every transaction, after the batch's data
//! messages are acknowledged (their offsets known) and before the commit, the relay also
//! writes one [`Watermark`] to `<topic>.watermarks` (one partition, compacted, key = the
//! store id): "everything up to `globalPosition` is in the topic, and the last data
//! message of partition p is at offset `lastOffsets[p]`". The offsets are cumulative (a
//! partition the batch did not touch keeps its earlier offset; the relay learns them at
//! start from its checkpoint scan of the topic's tail), so the latest watermark alone says
//! everything.
//!
//! The watermark commits with the data, in the same transaction: a `read_committed`
//! reader never sees a watermark whose data it cannot see. A query side waiting for
//! token P waits for a watermark with `globalPosition >= P`, then until each partition's
//! applied offset reaches that watermark's `lastOffsets`.
//!
//! Kept in a topic of its own so that `order-events` stays a pure stream of `OrderEvent`
//! records for other teams' consumers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The watermark topic of `topic`.
pub fn watermark_topic(topic: &str) -> String {
    format!("{topic}.watermarks")
}

/// One watermark record's value (JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    /// The event store the positions belong to (a UUID).
    pub store_id: String,
    /// Every event up to this global position is committed in the topic.
    pub global_position: i64,
    /// Per partition of the data topic, the offset of the last data message committed.
    /// Partitions that never had one are absent.
    pub last_offsets: BTreeMap<i32, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_reads_back_from_its_json() {
        let mark = Watermark {
            store_id: "abc".into(),
            global_position: 42,
            last_offsets: BTreeMap::from([(0, 7), (2, 19)]),
        };
        let text = serde_json::to_string(&mark).unwrap();
        assert_eq!(
            text,
            r#"{"storeId":"abc","globalPosition":42,"lastOffsets":{"0":7,"2":19}}"#
        );
        assert_eq!(serde_json::from_str::<Watermark>(&text).unwrap(), mark);
    }
}
