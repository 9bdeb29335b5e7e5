//! Folding one log event into the stored state of its order: the one rule every
//! read store adapter applies, so that each stores the same `Order` for the same log.

use crate::ReadError;
use order_domain::{DecodeError, Order, evolve};
use order_event_store::RecordedEvent;

/// Folds `event` into `order` (the stored state, `None` if the order is not stored
/// yet) unless it is not the next event of that order: an event at or below the
/// stored version was applied before (redelivery) and is skipped, one beyond the
/// next is skipped with a warning (earlier events are missing). Returns whether
/// `order` changed and must be written back.
///
/// An event of a type unknown to this code is counted (the version moves on, so
/// the order's later events still line up) but otherwise skipped; any other decode
/// failure is [`ReadError::Corrupt`] and must fail the whole batch.
pub fn fold_event(order: &mut Option<Order>, event: &RecordedEvent) -> Result<bool, ReadError> {
    let stored = order.as_ref().map_or(0, |o| o.version);
    if event.version != stored + 1 {
        if event.version > stored + 1 {
            tracing::warn!(
                order_id = %event.stream_id,
                event_version = event.version,
                stored_version = stored,
                global_position = event.global_position,
                "event skipped: it is ahead of the stored order; earlier events are missing"
            );
        }
        return Ok(false);
    }
    let domain_event = match event.decode() {
        Ok(domain_event) => domain_event,
        // A type from newer code: skip it rather than stop every order's
        // projection. Any other failure (a known type that does not decode, a
        // schema version this code cannot read) would misstate the order: stop.
        Err(e) if matches!(e.reason, DecodeError::UnknownType { .. }) => {
            tracing::warn!(
                order_id = %event.stream_id,
                event_type = %event.event_type,
                event_version = event.version,
                global_position = event.global_position,
                error = %e,
                "event of an unknown type skipped"
            );
            // Count it, so the order's later events still line up with its version.
            return Ok(match order.as_mut() {
                Some(order) => {
                    order.version += 1;
                    true
                }
                None => false,
            });
        }
        Err(e) => return Err(ReadError::Corrupt(e.to_string())),
    };
    let evolved = evolve(order.take(), &domain_event);
    if let Some(evolved) = &evolved
        && evolved.id != event.stream_id
    {
        return Err(ReadError::Corrupt(format!(
            "event {} of stream {} creates order {}",
            event.event_id, event.stream_id, evolved.id
        )));
    }
    *order = evolved;
    Ok(true)
}
