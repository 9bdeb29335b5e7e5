//! Why a command is refused.

use crate::OrderStatus;
use serde::Serialize;

/// A problem with one field of the input, named by its path on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A refusal. Each variant maps to one HTTP status and one stable `code`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("the order does not exist")]
    OrderNotFound,
    #[error("an order with this id already exists")]
    OrderAlreadyExists,
    #[error("{command} is not allowed on an order that is {status}")]
    InvalidStatus {
        status: OrderStatus,
        command: &'static str,
    },
    #[error("the last line of an order cannot be removed; cancel the order instead")]
    LastLine,
    #[error("an order cannot have more than {} lines", crate::MAX_LINES)]
    TooManyLines,
    #[error("SKU {sku} is already in the order with a different product name or unit price")]
    SkuConflict { sku: String },
    #[error(
        "adding to SKU {sku} would exceed the maximum quantity of {}",
        crate::MAX_QUANTITY
    )]
    QuantityLimit { sku: String },
    #[error("SKU {sku} is not in the order")]
    SkuNotFound { sku: String },
    #[error("the amounts are too large to total")]
    AmountOverflow,
}

impl DomainError {
    /// The stable machine-readable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation(_) => "validation_failed",
            DomainError::OrderNotFound => "order_not_found",
            DomainError::OrderAlreadyExists => "order_already_exists",
            DomainError::InvalidStatus { .. } => "invalid_status",
            DomainError::LastLine => "last_line",
            DomainError::TooManyLines => "too_many_lines",
            DomainError::SkuConflict { .. } => "sku_conflict",
            DomainError::QuantityLimit { .. } => "quantity_limit",
            DomainError::SkuNotFound { .. } => "sku_not_found",
            DomainError::AmountOverflow => "amount_overflow",
        }
    }
}
