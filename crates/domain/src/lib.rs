//! The order aggregate.
//!
//! Everything here is pure: [`decide`] turns a command and the current state
//! into events (or refuses), [`evolve`] folds one event into the state. The
//! caller supplies the clock and the actor through [`CommandContext`], so the
//! same inputs always give the same outputs, and replaying an order's events
//! through [`replay`] reproduces exactly the state the command side saw.

mod command;
mod error;
mod event;
mod money;
mod order;

pub use command::{Command, LineInput, NewLine, validate_line};
pub use error::{DomainError, FieldError};
pub use event::{Event, EventPayload};
pub use money::Currency;
pub use order::{Line, Order, OrderStatus};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Most lines an order may hold.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Who issues a command, and when. Supplied by the adapter, never read from a clock here.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub actor: String,
    pub now: DateTime<Utc>,
}

/// Decides `command` against `state` (`None` when the order does not exist yet).
pub fn decide(
    command: &Command,
    state: Option<&Order>,
    ctx: &CommandContext,
) -> Result<Vec<Event>, DomainError> {
    let payloads = match (command, state) {
        (Command::CreateOrder { .. }, Some(_)) => return Err(DomainError::OrderAlreadyExists),
        (
            Command::CreateOrder {
                order_id,
                customer_id,
                currency,
                lines,
            },
            None,
        ) => vec![decide_create(*order_id, customer_id, *currency, lines)?],
        (_, None) => return Err(DomainError::OrderNotFound),
        (command, Some(order)) => decide_on_existing(command, order)?,
    };
    Ok(payloads
        .into_iter()
        .map(|payload| Event {
            payload,
            occurred_at: ctx.now,
            actor: ctx.actor.clone(),
        })
        .collect())
}

fn decide_create(
    order_id: Uuid,
    customer_id: &str,
    currency: Currency,
    lines: &[NewLine],
) -> Result<EventPayload, DomainError> {
    // Validation already guaranteed 1..=100 lines with distinct SKUs; the total
    // is the one thing left that can still overflow.
    order::checked_total(lines.iter().map(|l| (l.unit_price, l.quantity)))
        .ok_or(DomainError::AmountOverflow)?;
    Ok(EventPayload::OrderCreated {
        order_id,
        customer_id: customer_id.to_string(),
        currency,
        lines: lines.iter().map(NewLine::to_line).collect(),
    })
}

fn decide_on_existing(command: &Command, order: &Order) -> Result<Vec<EventPayload>, DomainError> {
    use OrderStatus::*;
    let refuse = || DomainError::InvalidStatus {
        status: order.status,
        command: command.name(),
    };
    let payload = match (command, order.status) {
        (Command::CreateOrder { .. }, _) => return Err(DomainError::OrderAlreadyExists),
        (Command::AddItem { line }, Created) => decide_add_item(order, line)?,
        (Command::RemoveItem { sku }, Created) => {
            if !order.lines.iter().any(|l| &l.sku == sku) {
                return Err(DomainError::SkuNotFound { sku: sku.clone() });
            }
            if order.lines.len() == 1 {
                return Err(DomainError::LastLine);
            }
            EventPayload::ItemRemoved { sku: sku.clone() }
        }
        (Command::ApproveOrder { reason }, Created) => EventPayload::OrderApproved {
            reason: reason.clone(),
        },
        (Command::RejectOrder { reason }, Created) => EventPayload::OrderRejected {
            reason: reason.clone(),
        },
        (
            Command::ShipOrder {
                tracking_number,
                carrier,
            },
            Approved,
        ) => EventPayload::OrderShipped {
            tracking_number: tracking_number.clone(),
            carrier: carrier.clone(),
        },
        (Command::CancelOrder { reason }, Created | Approved) => EventPayload::OrderCanceled {
            reason: reason.clone(),
        },
        _ => return Err(refuse()),
    };
    Ok(vec![payload])
}

fn decide_add_item(order: &Order, line: &NewLine) -> Result<EventPayload, DomainError> {
    let quantities = match order.lines.iter().find(|l| l.sku == line.sku) {
        Some(existing) => {
            if existing.unit_price != line.unit_price || existing.product_name != line.product_name
            {
                return Err(DomainError::SkuConflict {
                    sku: line.sku.clone(),
                });
            }
            let merged = existing.quantity + line.quantity;
            if merged > MAX_QUANTITY {
                return Err(DomainError::QuantityLimit {
                    sku: line.sku.clone(),
                });
            }
            order
                .lines
                .iter()
                .map(|l| {
                    (
                        l.unit_price,
                        if l.sku == line.sku {
                            merged
                        } else {
                            l.quantity
                        },
                    )
                })
                .collect::<Vec<_>>()
        }
        None => {
            if order.lines.len() >= MAX_LINES {
                return Err(DomainError::TooManyLines);
            }
            order
                .lines
                .iter()
                .map(|l| (l.unit_price, l.quantity))
                .chain([(line.unit_price, line.quantity)])
                .collect()
        }
    };
    order::checked_total(quantities).ok_or(DomainError::AmountOverflow)?;
    Ok(EventPayload::ItemAdded {
        line: line.to_line(),
        currency: order.currency,
    })
}

/// Folds one event into the state. Events are facts: this never refuses.
pub fn evolve(state: Option<Order>, event: &Event) -> Option<Order> {
    order::apply(state, event)
}

/// Rebuilds an order from its full history.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Order> {
    events.into_iter().fold(None, evolve)
}
