//! The order as queries return it, and how a domain `Order` becomes one.

use chrono::{DateTime, Utc};
use order_domain::{Order, OrderStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order as queries return it: exactly the JSON body of `GET /api/v1/orders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: String,
    /// CREATED, APPROVED, REJECTED, SHIPPED or CANCELED.
    #[schema(value_type = String, example = "CREATED")]
    pub status: OrderStatus,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
    /// In the order the lines were first added.
    pub items: Vec<ItemView>,
    /// Sum of the line totals: a decimal string in the currency's major unit with
    /// exactly its number of fraction digits (USD `"12.30"`, JPY `"1230"`, KWD `"1.230"`).
    #[schema(example = "12.30")]
    pub total_amount: String,
    /// Number of events applied; the order's `ETag`.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of an [`OrderView`]; amounts are decimal strings in the major unit of
/// the order's currency, with exactly its number of fraction digits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    pub sku: String,
    pub product_name: String,
    pub quantity: u32,
    /// Price of one unit in the currency's major unit (USD `"12.50"` is twelve dollars fifty).
    #[schema(example = "12.50")]
    pub unit_price: String,
    /// `unitPrice` × `quantity`, in the same unit.
    #[schema(example = "25.00")]
    pub line_total: String,
}

impl OrderView {
    /// Names this body's JSON layout: the API contract of every order response,
    /// also kept verbatim in idempotency records (replays answer with it) and
    /// by any read store that stores views. Change it whenever the JSON changes:
    /// the read model's golden test (`tests/golden.rs`) fails until you do.
    pub const SCHEMA: &'static str = "order-view/v1";
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> OrderView {
        let currency = order.currency;
        OrderView {
            order_id: order.id,
            customer_id: order.customer_id.clone(),
            status: order.status,
            currency: currency.code().to_string(),
            items: order
                .lines
                .iter()
                .map(|line| ItemView {
                    sku: line.sku.clone(),
                    product_name: line.product_name.clone(),
                    quantity: line.quantity,
                    unit_price: currency.format_amount(i128::from(line.unit_price)),
                    // i128: exact even where i64 would overflow (decide() refuses that anyway).
                    line_total: currency
                        .format_amount(i128::from(line.unit_price) * i128::from(line.quantity)),
                })
                .collect(),
            total_amount: currency.format_amount(i128::from(order.total)),
            version: order.version,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}
