//! Opaque keyset-pagination cursors.
//!
//! A cursor is the sort key of the last item of a page, `(created_at, order_id)`,
//! plus the sort direction, as URL-safe base64 without padding. The next page
//! starts strictly after that key, so orders added between page fetches never
//! shift what follows (unlike an offset). Decoding is strict: anything we would
//! not have written, including a cursor issued for the other direction, is
//! [`ReadError::InvalidCursor`].

use crate::{ReadError, SortOrder};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const VERSION: &str = "o1";

/// The fixed-width UTC text form used for `created_at` / `updated_at` columns:
/// text order equals time order.
pub fn time_key(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The position after which the next page starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub created_at: String,
    pub order_id: String,
}

fn direction(sort: SortOrder) -> &'static str {
    match sort {
        SortOrder::Asc => "a",
        SortOrder::Desc => "d",
    }
}

pub fn encode(sort: SortOrder, key: &Key) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{VERSION}|{}|{}|{}",
        direction(sort),
        key.created_at,
        key.order_id
    ))
}

pub fn decode(sort: SortOrder, cursor: &str) -> Result<Key, ReadError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| ReadError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ReadError::InvalidCursor)?;
    let mut parts = text.split('|');
    let (Some(VERSION), Some(dir), Some(created_at), Some(order_id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ReadError::InvalidCursor);
    };
    if dir != direction(sort) {
        return Err(ReadError::InvalidCursor);
    }
    // Only canonical forms: what `encode` writes, nothing that merely parses.
    let time = DateTime::parse_from_rfc3339(created_at).map_err(|_| ReadError::InvalidCursor)?;
    if time_key(&time.with_timezone(&Utc)) != created_at {
        return Err(ReadError::InvalidCursor);
    }
    let id = Uuid::parse_str(order_id).map_err(|_| ReadError::InvalidCursor)?;
    if id.to_string() != order_id {
        return Err(ReadError::InvalidCursor);
    }
    Ok(Key {
        created_at: created_at.to_string(),
        order_id: order_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            created_at: time_key(&Utc::now()),
            order_id: Uuid::new_v4().to_string(),
        }
    }

    #[test]
    fn round_trips_in_its_own_direction_only() {
        let k = key();
        let c = encode(SortOrder::Asc, &k);
        assert_eq!(decode(SortOrder::Asc, &c).unwrap(), k);
        assert!(matches!(
            decode(SortOrder::Desc, &c),
            Err(ReadError::InvalidCursor)
        ));
        assert!(!c.contains(['+', '/', '=']));
    }

    #[test]
    fn refuses_anything_else() {
        let good = encode(SortOrder::Desc, &key());
        let mut tampered = good.clone();
        tampered.pop();
        for bad in [
            "",
            "!!!",
            tampered.as_str(),
            &URL_SAFE_NO_PAD.encode("o1|d|2024-01-01T00:00:00Z|x"),
            &URL_SAFE_NO_PAD.encode(format!("o1|d|yesterday|{}", Uuid::nil())),
            &URL_SAFE_NO_PAD.encode(format!(
                "o1|d|2024-01-01T00:00:00.000000000Z|{}|x",
                Uuid::nil()
            )),
        ] {
            assert!(
                matches!(decode(SortOrder::Desc, bad), Err(ReadError::InvalidCursor)),
                "{bad:?} was accepted"
            );
        }
        assert!(decode(SortOrder::Desc, &good).is_ok());
    }
}
