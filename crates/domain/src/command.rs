//! Commands, and the validation that turns raw input into them.
//!
//! Validation collects every problem at once (a client fixing a form wants all
//! of them), naming each field by its path on the wire (`items[2].unitPrice`).

use crate::{Currency, FieldError, Line, MAX_LINES, MAX_QUANTITY};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A validated command. Build the variants with validated parts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateOrder {
        order_id: Uuid,
        customer_id: String,
        currency: Currency,
        lines: Vec<NewLine>,
    },
    AddItem {
        line: NewLine,
    },
    RemoveItem {
        sku: String,
    },
    ApproveOrder {
        reason: Option<String>,
    },
    RejectOrder {
        reason: String,
    },
    ShipOrder {
        tracking_number: String,
        carrier: String,
    },
    CancelOrder {
        reason: Option<String>,
    },
}

impl Command {
    /// Stable name, used in errors and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateOrder { .. } => "CreateOrder",
            Command::AddItem { .. } => "AddItem",
            Command::RemoveItem { .. } => "RemoveItem",
            Command::ApproveOrder { .. } => "ApproveOrder",
            Command::RejectOrder { .. } => "RejectOrder",
            Command::ShipOrder { .. } => "ShipOrder",
            Command::CancelOrder { .. } => "CancelOrder",
        }
    }

    /// Validates a create request. `currency` and `items` are as the client sent them.
    pub fn create_order(
        order_id: Uuid,
        customer_id: &str,
        currency: &str,
        items: &[LineInput],
    ) -> Result<Command, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(message) = check_text(customer_id, 255) {
            errors.push(FieldError::new("customerId", message));
        }
        let currency = Currency::parse(currency)
            .map_err(|message| errors.push(FieldError::new("currency", message)))
            .ok();
        if items.is_empty() || items.len() > MAX_LINES {
            errors.push(FieldError::new(
                "items",
                format!("an order needs 1 to {MAX_LINES} lines, got {}", items.len()),
            ));
        }
        let mut lines: Vec<NewLine> = Vec::with_capacity(items.len());
        if let Some(currency) = currency {
            for (i, item) in items.iter().enumerate() {
                match validate_line(item, currency, &format!("items[{i}].")) {
                    Ok(line) if lines.iter().any(|l| l.sku == line.sku) => {
                        errors.push(FieldError::new(
                            format!("items[{i}].sku"),
                            format!("SKU {} appears more than once", line.sku),
                        ))
                    }
                    Ok(line) => lines.push(line),
                    Err(mut e) => errors.append(&mut e),
                }
            }
        }
        match currency {
            Some(currency) if errors.is_empty() => Ok(Command::CreateOrder {
                order_id,
                customer_id: customer_id.to_string(),
                currency,
                lines,
            }),
            _ => Err(errors),
        }
    }

    pub fn reject(reason: Option<&str>) -> Result<Command, Vec<FieldError>> {
        let reason = required_text("reason", reason, 1000)?;
        Ok(Command::RejectOrder { reason })
    }

    pub fn ship(
        tracking_number: Option<&str>,
        carrier: Option<&str>,
    ) -> Result<Command, Vec<FieldError>> {
        let tracking = required_text("trackingNumber", tracking_number, 100);
        let carrier = required_text("carrier", carrier, 100);
        match (tracking, carrier) {
            (Ok(tracking_number), Ok(carrier)) => Ok(Command::ShipOrder {
                tracking_number,
                carrier,
            }),
            (t, c) => Err(t.err().into_iter().chain(c.err()).flatten().collect()),
        }
    }

    /// Approve and cancel take an optional reason; blank counts as absent.
    pub fn optional_reason(reason: Option<&str>) -> Result<Option<String>, Vec<FieldError>> {
        match reason {
            Some(r) if !r.trim().is_empty() => required_text("reason", Some(r), 1000).map(Some),
            _ => Ok(None),
        }
    }
}

/// A line as the client sent it, before validation.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineInput {
    pub sku: Option<String>,
    pub product_name: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<String>,
}

/// A validated line to add to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLine {
    pub sku: String,
    pub product_name: String,
    pub quantity: u32,
    /// Minor units of the order's currency; always > 0.
    pub unit_price: i64,
}

impl NewLine {
    pub(crate) fn to_line(&self) -> Line {
        Line {
            sku: self.sku.clone(),
            product_name: self.product_name.clone(),
            quantity: self.quantity,
            unit_price: self.unit_price,
        }
    }
}

/// Validates one line in `currency`. `prefix` is prepended to field names.
pub fn validate_line(
    input: &LineInput,
    currency: Currency,
    prefix: &str,
) -> Result<NewLine, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut field = |name: &str, message: String| {
        errors.push(FieldError::new(format!("{prefix}{name}"), message))
    };
    let sku = match input.sku.as_deref().map(|s| check_text(s, 64)) {
        None => {
            field("sku", "is required".into());
            None
        }
        Some(Err(m)) => {
            field("sku", m);
            None
        }
        Some(Ok(())) => input.sku.clone(),
    };
    let product_name = match input.product_name.as_deref().map(|s| check_text(s, 200)) {
        None => {
            field("productName", "is required".into());
            None
        }
        Some(Err(m)) => {
            field("productName", m);
            None
        }
        Some(Ok(())) => input.product_name.clone(),
    };
    let quantity = match input.quantity {
        None => {
            field("quantity", "is required".into());
            None
        }
        Some(q) if (1..=i64::from(MAX_QUANTITY)).contains(&q) => u32::try_from(q).ok(),
        Some(q) => {
            field(
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}, got {q}"),
            );
            None
        }
    };
    let unit_price = match input.unit_price.as_deref() {
        None => {
            field("unitPrice", "is required".into());
            None
        }
        Some(text) => match currency.parse_amount(text) {
            Ok(0) => {
                field("unitPrice", "must be greater than zero".into());
                None
            }
            Ok(minor) => Some(minor),
            Err(m) => {
                field("unitPrice", m);
                None
            }
        },
    };
    match (sku, product_name, quantity, unit_price) {
        (Some(sku), Some(product_name), Some(quantity), Some(unit_price)) if errors.is_empty() => {
            Ok(NewLine {
                sku,
                product_name,
                quantity,
                unit_price,
            })
        }
        _ => Err(errors),
    }
}

/// Non-blank, at most `max` characters, no control characters.
fn check_text(text: &str, max: usize) -> Result<(), String> {
    let len = text.chars().count();
    if text.trim().is_empty() {
        Err("must not be blank".into())
    } else if len > max {
        Err(format!("must be at most {max} characters, got {len}"))
    } else if text.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

fn required_text(field: &str, value: Option<&str>, max: usize) -> Result<String, Vec<FieldError>> {
    match value {
        None => Err(vec![FieldError::new(field, "is required")]),
        Some(v) => check_text(v, max)
            .map(|()| v.to_string())
            .map_err(|m| vec![FieldError::new(field, m)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, qty: i64, price: &str) -> LineInput {
        LineInput {
            sku: Some(sku.into()),
            product_name: Some(format!("Product {sku}")),
            quantity: Some(qty),
            unit_price: Some(price.into()),
        }
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn create_collects_every_field_error_with_its_path() {
        let items = [
            item("A", 0, "1.00"),
            item("", 1, "-1"),
            item("C", 1, "1.001"),
        ];
        let errors = Command::create_order(Uuid::nil(), " ", "USD", &items).unwrap_err();
        assert_eq!(
            fields(errors),
            [
                "customerId",
                "items[0].quantity",
                "items[1].sku",
                "items[1].unitPrice",
                "items[2].unitPrice"
            ]
        );
    }

    #[test]
    fn create_needs_one_to_a_hundred_lines() {
        assert_eq!(
            fields(Command::create_order(Uuid::nil(), "c", "USD", &[]).unwrap_err()),
            ["items"]
        );
        let many: Vec<_> = (0..101).map(|i| item(&format!("S{i}"), 1, "1")).collect();
        assert_eq!(
            fields(Command::create_order(Uuid::nil(), "c", "USD", &many).unwrap_err()),
            ["items"]
        );
        assert!(Command::create_order(Uuid::nil(), "c", "USD", &many[..100]).is_ok());
    }

    #[test]
    fn create_refuses_unknown_currency_and_duplicate_skus() {
        assert_eq!(
            fields(
                Command::create_order(Uuid::nil(), "c", "usd", &[item("A", 1, "1")]).unwrap_err()
            ),
            ["currency"]
        );
        let dup = [item("A", 1, "1"), item("A", 1, "1")];
        assert_eq!(
            fields(Command::create_order(Uuid::nil(), "c", "USD", &dup).unwrap_err()),
            ["items[1].sku"]
        );
    }

    #[test]
    fn line_rules_are_enforced() {
        let usd = Currency::parse("USD").unwrap();
        let long_sku = "x".repeat(65);
        assert!(validate_line(&item(&long_sku, 1, "1"), usd, "").is_err());
        assert!(validate_line(&item(&"x".repeat(64), 1, "1"), usd, "").is_ok());
        assert!(validate_line(&item("A", 10_001, "1"), usd, "").is_err());
        assert!(validate_line(&item("A", 10_000, "1"), usd, "").is_ok());
        assert!(validate_line(&item("A", 1, "0"), usd, "").is_err());
        assert!(validate_line(&item("A", 1, "0.00"), usd, "").is_err());
        let mut no_name = item("A", 1, "1");
        no_name.product_name = Some("y".repeat(201));
        assert_eq!(
            fields(validate_line(&no_name, usd, "").unwrap_err()),
            ["productName"]
        );
        assert_eq!(
            fields(validate_line(&LineInput::default(), usd, "").unwrap_err()),
            ["sku", "productName", "quantity", "unitPrice"]
        );
    }

    #[test]
    fn reject_needs_a_reason_and_ship_needs_tracking_and_carrier() {
        assert!(Command::reject(None).is_err());
        assert!(Command::reject(Some("  ")).is_err());
        assert!(Command::reject(Some("out of stock")).is_ok());
        assert_eq!(
            fields(Command::ship(None, Some("")).unwrap_err()),
            ["trackingNumber", "carrier"]
        );
        assert!(Command::ship(Some("1Z999"), Some("UPS")).is_ok());
        assert_eq!(Command::optional_reason(Some(" ")), Ok(None));
    }
}
