//! Order state and how events change it.

use crate::{Currency, Event, EventPayload};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Created,
    Approved,
    Rejected,
    Shipped,
    Canceled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Created,
        OrderStatus::Approved,
        OrderStatus::Rejected,
        OrderStatus::Shipped,
        OrderStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "CREATED",
            OrderStatus::Approved => "APPROVED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No command changes an order in a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Shipped | OrderStatus::Rejected | OrderStatus::Canceled
        )
    }

    /// Whether the order's total counts towards revenue figures.
    pub fn counts_towards_revenue(self) -> bool {
        !matches!(self, OrderStatus::Rejected | OrderStatus::Canceled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order. `unit_price` is in minor units of the order's currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub sku: String,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: i64,
}

impl Line {
    /// `unit_price × quantity`; decide() refuses any change for which this overflows.
    pub fn total(&self) -> i64 {
        self.unit_price.saturating_mul(i64::from(self.quantity))
    }
}

/// The state of one order. Its JSON is stored outside the event log (snapshots,
/// the read model's documents), so its layout is versioned: see [`Order::SCHEMA`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    pub currency: Currency,
    /// In the order they were first added; at most one per SKU.
    pub lines: Vec<Line>,
    /// Sum of line totals, in minor units.
    pub total: i64,
    /// Number of events applied, starting at 1.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Names the serialized layout of [`Order`]. Stored next to every copy of that
    /// JSON (snapshots, read-model documents); a copy of another layout is not
    /// trusted but rebuilt from the events. Change it whenever the JSON changes:
    /// the golden test (`tests/golden.rs`) fails until you do.
    pub const SCHEMA: &'static str = "order/v1";
}

/// The order total for `(unit price, quantity)` pairs, or `None` on overflow.
pub(crate) fn checked_total(lines: impl IntoIterator<Item = (i64, u32)>) -> Option<i64> {
    lines.into_iter().try_fold(0i64, |sum, (price, qty)| {
        sum.checked_add(price.checked_mul(i64::from(qty))?)
    })
}

fn recompute_total(lines: &[Line]) -> i64 {
    // decide() proved this does not overflow for every event it emitted.
    lines
        .iter()
        .fold(0i64, |sum, l| sum.saturating_add(l.total()))
}

pub(crate) fn apply(state: Option<Order>, event: &Event) -> Option<Order> {
    let at = event.occurred_at;
    let mut order = match (&event.payload, state) {
        (
            EventPayload::OrderCreated {
                order_id,
                customer_id,
                currency,
                lines,
            },
            _,
        ) => Order {
            id: *order_id,
            customer_id: customer_id.clone(),
            status: OrderStatus::Created,
            currency: *currency,
            lines: lines.clone(),
            total: recompute_total(lines),
            version: 0,
            created_at: at,
            updated_at: at,
        },
        // Any other event before creation cannot come from decide(); ignore it.
        (_, None) => return None,
        (payload, Some(mut order)) => {
            match payload {
                EventPayload::OrderCreated { .. } => {} // handled by the first arm
                EventPayload::ItemAdded { line, .. } => {
                    match order.lines.iter_mut().find(|l| l.sku == line.sku) {
                        Some(existing) => existing.quantity += line.quantity,
                        None => order.lines.push(line.clone()),
                    }
                }
                EventPayload::ItemRemoved { sku } => order.lines.retain(|l| &l.sku != sku),
                EventPayload::OrderApproved { .. } => order.status = OrderStatus::Approved,
                EventPayload::OrderRejected { .. } => order.status = OrderStatus::Rejected,
                EventPayload::OrderShipped { .. } => order.status = OrderStatus::Shipped,
                EventPayload::OrderCanceled { .. } => order.status = OrderStatus::Canceled,
            }
            order.total = recompute_total(&order.lines);
            order.updated_at = at;
            order
        }
    };
    order.version += 1;
    Some(order)
}
