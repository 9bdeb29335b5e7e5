//! Stored layouts of events, and how data written in an older layout is read.
//!
//! Events are kept forever, so the JSON an event was stored with outlives the
//! code that wrote it. Every stored event carries the `schema_version` of its
//! data layout (one number for all event types: [`EventPayload::SCHEMA_VERSION`]).
//! Reading dispatches on that number:
//!
//! - the current version is decoded directly into [`EventPayload`];
//! - an older version is first rewritten, step by step, by *upcasters*: pure
//!   functions from the JSON of version `n` to the JSON of version `n + 1`,
//!   until it is current, then decoded;
//! - a newer version (written by newer code), a version older than the oldest
//!   upcaster, or a type this code does not know is a [`DecodeError`], never a
//!   guess: the data is refused, not defaulted.
//!
//! # Changing an event's layout
//!
//! 1. Change [`EventPayload`] and bump [`EventPayload::SCHEMA_VERSION`] to `n + 1`.
//! 2. Append an [`Upcaster`] `{ from: n, .. }` to [`UPCASTERS`] that turns every
//!    event type's version-`n` data into version `n + 1` (data of types that did
//!    not change passes through untouched).
//! 3. Run `UPDATE_GOLDEN=1 cargo test -p order-domain --test golden`: it pins the
//!    new layout in `tests/golden/events.v<n+1>.json` and keeps `events.v<n>.json`,
//!    which from then on must upcast to the very same events (so a field added
//!    with a default needs today's samples to carry that default).
//!
//! The golden test fails if step 1's layout change is made without the bump
//! (the pinned `events.v<n>.json` no longer matches) or without step 2 (the old
//! golden file no longer decodes).
//!
//! [`EventPayload`]: crate::EventPayload
//! [`EventPayload::SCHEMA_VERSION`]: crate::EventPayload::SCHEMA_VERSION

use crate::EventPayload;
use serde_json::Value;

/// Rewrites one event's data from version `from` to version `from + 1`.
/// Gets the event type (the step may concern only some types) and returns the
/// reason when the data does not have the layout the step expects.
pub type UpcastFn = fn(event_type: &str, data: Value) -> Result<Value, String>;

/// One step of the upcaster chain.
#[derive(Clone, Copy)]
pub struct Upcaster {
    /// The version this step reads; it writes `from + 1`.
    pub from: u32,
    pub upcast: UpcastFn,
}

/// The upcasters of the stored event layouts, oldest first. Layout 1 is the
/// first this platform ever stored, so there is nothing to upcast yet.
pub const UPCASTERS: &[Upcaster] = &[];

/// A set of layouts this code can read: the current version and the chain of
/// upcasters that leads to it. [`EventSchema::CURRENT`] is the real one; tests
/// build others to exercise the chain.
#[derive(Clone, Copy)]
pub struct EventSchema<'a> {
    /// The version [`EventPayload`]'s serde layout has today.
    pub current: u32,
    /// Contiguous steps ending at `current - 1`, oldest first ([`EventSchema::check`]).
    pub upcasters: &'a [Upcaster],
}

/// Why stored event data could not be read back. Callers add which event it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?}")]
    UnknownType { event_type: String },
    #[error(
        "{event_type} has schema version {version}, newer than this code reads \
         (up to {current}); upgrade before reading this store"
    )]
    FutureVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("{event_type} has schema version {version}, and no upcaster reads it")]
    NoUpcaster { event_type: String, version: u32 },
    #[error("{event_type} data of schema version {version} cannot be upcast: {reason}")]
    Upcast {
        event_type: String,
        version: u32,
        reason: String,
    },
    #[error("{event_type} data of schema version {version} does not decode: {reason}")]
    Malformed {
        event_type: String,
        version: u32,
        reason: String,
    },
}

impl EventSchema<'static> {
    /// What this code writes and reads.
    pub const CURRENT: EventSchema<'static> = EventSchema {
        current: EventPayload::SCHEMA_VERSION,
        upcasters: UPCASTERS,
    };
}

impl EventSchema<'_> {
    /// Reads stored data of `event_type` written in layout `version`.
    pub fn decode(
        &self,
        event_type: &str,
        version: u32,
        data: &Value,
    ) -> Result<EventPayload, DecodeError> {
        if !EventPayload::TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownType {
                event_type: event_type.to_string(),
            });
        }
        let data = self.upcast(event_type, version, data.clone())?;
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).map_err(
            |e| DecodeError::Malformed {
                event_type: event_type.to_string(),
                version,
                reason: e.to_string(),
            },
        )
    }

    /// Rewrites `data` from layout `version` to the current layout.
    pub fn upcast(
        &self,
        event_type: &str,
        version: u32,
        data: Value,
    ) -> Result<Value, DecodeError> {
        if version > self.current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_string(),
                version,
                current: self.current,
            });
        }
        let mut data = data;
        for from in version..self.current {
            let step = self
                .upcasters
                .iter()
                .find(|u| u.from == from)
                .ok_or_else(|| DecodeError::NoUpcaster {
                    event_type: event_type.to_string(),
                    version,
                })?;
            data = (step.upcast)(event_type, data).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_string(),
                version: from,
                reason,
            })?;
        }
        Ok(data)
    }

    /// The chain is well formed: steps strictly follow each other and the last
    /// one reaches `current`. A gap would make every version below it unreadable.
    pub fn check(&self) -> Result<(), String> {
        for pair in self.upcasters.windows(2) {
            if pair[1].from != pair[0].from + 1 {
                return Err(format!(
                    "upcaster from v{} is followed by one from v{}",
                    pair[0].from, pair[1].from
                ));
            }
        }
        match self.upcasters.last() {
            Some(last) if last.from + 1 != self.current => Err(format!(
                "the last upcaster writes v{}, but the current version is {}",
                last.from + 1,
                self.current
            )),
            _ => Ok(()),
        }
    }
}
