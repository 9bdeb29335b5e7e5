//! The request bodies of the commands as JSON Schema, exactly as strict as the
//! server: a body the schema allows is accepted unless the order's state forbids
//! the command (409) or it does not exist (404), and a body the schema refuses is
//! refused (400 for shape, 422 for values). `dev/api_fuzz` holds the document to
//! that, and the tests below hold these patterns to the domain's own validation.
//!
//! Written by hand rather than derived: a derive cannot say "non-blank, without
//! control characters", nor tie the unit price's fraction digits to the currency.
//!
//! Three rules stay outside any schema, and the descriptions say so: an order has
//! at most one line per SKU (a create listing a SKU twice is 422); the fraction
//! digits a unit price may have depend on the currency, which an added item takes
//! from its order; and amounts, written in the currency's major unit (USD
//! `"12.50"`), are kept as 64-bit minor units, so a price or an order total
//! beyond 9 223 372 036 854 775 807 of them is refused (422), never wrapped
//! (DESIGN.md §3.1) — a bound on a sum, which JSON Schema cannot state.

use order_domain::{Currency, MAX_LINES, MAX_QUANTITY};
use serde_json::{Value, json};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// Longest `customerId`.
pub(crate) const MAX_CUSTOMER_ID: usize = 255;
/// Longest SKU.
pub(crate) const MAX_SKU: usize = 64;
/// Longest product name.
pub(crate) const MAX_PRODUCT_NAME: usize = 200;
/// Longest reason (reject, approve, cancel).
pub(crate) const MAX_REASON: usize = 1000;
/// Longest tracking number or carrier.
pub(crate) const MAX_SHIPPING_TEXT: usize = 100;

/// Control characters (Unicode `Cc`), refused anywhere in a text field.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// Unicode `White_Space` outside `Cc`: what `str::trim` removes besides controls.
const SPACE: &str = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Text the domain accepts (`check_text`): no control character, and at least
/// one character that is not white space.
pub(crate) fn text_pattern() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*$")
}

/// Text `str::trim` makes empty: only white space (controls included).
pub(crate) fn blank_pattern() -> String {
    format!(r"^[\t\n\u000b\u000c\r\u0085{SPACE}]*$")
}

/// A decimal string > 0 with at most `exponent` fraction digits (leading zeros
/// allowed, as the parser allows them).
pub(crate) fn price_pattern(exponent: u8) -> String {
    let fraction = match exponent {
        0 => String::new(),
        n => format!(r"(?:\.[0-9]{{1,{n}}})?"),
    };
    // An integer part that is zero needs a non-zero digit in the fraction.
    let zero_whole = match exponent {
        0 => String::new(),
        n => {
            let nonzero_fraction: Vec<String> = (0..n)
                .map(|zeros| {
                    format!(
                        "{}[1-9][0-9]{{0,{}}}",
                        "0".repeat(zeros.into()),
                        n - 1 - zeros
                    )
                })
                .collect();
            format!(r"|0+\.(?:{})", nonzero_fraction.join("|"))
        }
    };
    format!("^(?:0*[1-9][0-9]*{fraction}{zero_whole})$")
}

/// The currencies the platform knows, grouped by their number of fraction digits.
pub(crate) fn currencies_by_exponent() -> Vec<(u8, Vec<&'static str>)> {
    let mut groups: Vec<(u8, Vec<&'static str>)> = Vec::new();
    let letters = b'A'..=b'Z';
    for a in letters.clone() {
        for b in letters.clone() {
            for c in letters.clone() {
                let code = String::from_utf8(vec![a, b, c]).unwrap_or_default();
                let Ok(currency) = Currency::parse(&code) else {
                    continue;
                };
                match groups.iter_mut().find(|(e, _)| *e == currency.exponent()) {
                    Some((_, codes)) => codes.push(currency.code()),
                    None => groups.push((currency.exponent(), vec![currency.code()])),
                }
            }
        }
    }
    groups.sort_by_key(|(e, _)| *e);
    groups
}

fn text(min: usize, max: usize, description: &str) -> Value {
    json!({
        "type": "string", "minLength": min, "maxLength": max,
        "pattern": text_pattern(), "description": description,
    })
}

/// An optional reason: absent, null, blank (all treated as none), or a text.
fn optional_reason() -> Value {
    json!({
        "description": format!("Optional. Blank or null counts as none; otherwise 1–{MAX_REASON} characters without control characters."),
        "anyOf": [
            {"type": "null"},
            {"type": "string", "pattern": blank_pattern()},
            text(1, MAX_REASON, "The reason."),
        ],
    })
}

fn item(price: Value) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["sku", "productName", "quantity", "unitPrice"],
        "properties": {
            "sku": text(1, MAX_SKU, "Stock keeping unit; one line per SKU in an order."),
            "productName": text(1, MAX_PRODUCT_NAME, "Product name."),
            "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
            "unitPrice": price,
        },
        "example": {"sku": "MUG-1", "productName": "Blue mug", "quantity": 2, "unitPrice": "12.50"},
    })
}

fn price(exponent: u8, description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": price_pattern(exponent),
        "description": description,
        "example": price_example(exponent),
    })
}

/// What a price looks like in a currency with `exponent` fraction digits.
pub(crate) fn price_example(exponent: u8) -> &'static str {
    match exponent {
        0 => "1250",
        3 => "1.250",
        _ => "12.50",
    }
}

/// What every price description starts with: the unit, which a number alone
/// cannot show (`"1250"` is 1 250 dollars, not 12.50).
pub(crate) const PRICE_UNIT: &str = "Price of one unit in the currency's major unit, as a \
     decimal string: USD \"12.50\" is twelve dollars fifty (not \"1250\"), JPY \"1250\" is \
     1250 yen, KWD \"1.250\" is one dinar 250 fils.";

fn to_schema(value: Value) -> RefOr<Schema> {
    // The values above are fixed; the tests prove each one deserialises.
    serde_json::from_value(value).unwrap_or_else(|e| panic!("a command body schema: {e}"))
}

macro_rules! schema {
    ($type:ty, $build:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                to_schema($build)
            }
        }
        /// Named after the type (`CreateOrderBody`), as derived schemas are.
        impl ToSchema for $type {}
    };
}

schema!(crate::routes::ItemBody, {
    let mut body = item(price(
        3,
        &format!(
            "{PRICE_UNIT} Greater than 0, with no more fraction digits than the order's \
             currency has (USD 2, JPY 0, KWD 3): the server answers 422 otherwise, since \
             this body does not carry the currency. 422 too if the price or the order total \
             would exceed 9223372036854775807 minor units."
        ),
    ));
    // The pattern admits every currency's prices (the order's currency decides,
    // 422); the example is a USD one.
    body["properties"]["unitPrice"]["example"] = json!(price_example(2));
    body["description"] = json!(
        "One order line. Adding a SKU already in the order adds to its quantity when the \
         product name and unit price match (409 otherwise, or past the quantity limit)."
    );
    body
});

schema!(crate::routes::CreateOrderBody, {
    let variants: Vec<Value> = currencies_by_exponent()
        .into_iter()
        .map(|(exponent, codes)| {
            json!({
                "title": format!("An order in a currency with {exponent} fraction digits"),
                "type": "object",
                "additionalProperties": false,
                "required": ["customerId", "currency", "items"],
                "properties": {
                    "customerId": text(1, MAX_CUSTOMER_ID, "The owning customer; a customer may only use its own token subject."),
                    "currency": {"type": "string", "enum": codes},
                    "items": {
                        "type": "array", "minItems": 1, "maxItems": MAX_LINES,
                        "description": "Distinct SKUs: a SKU listed twice is 422.",
                        "items": item(price(exponent, &format!(
                            "{PRICE_UNIT} Greater than 0, at most {exponent} fraction digits. 422 if the price or the order total would exceed 9223372036854775807 minor units."
                        ))),
                    },
                    "orderId": {
                        "type": ["string", "null"], "format": "uuid",
                        "description": "Optional client-chosen id (generated when absent); an id already taken is 409.",
                    },
                },
            })
        })
        .collect();
    json!({
        "description": "A new order. The unit prices' fraction digits follow the currency, hence one shape per exponent.",
        "oneOf": variants,
        "example": {
            "customerId": "alice", "currency": "USD",
            "items": [{"sku": "MUG-1", "productName": "Blue mug", "quantity": 2, "unitPrice": "12.50"}],
        },
    })
});

schema!(
    crate::routes::ReasonBody,
    json!({
        "description": "Optional body of approve and cancel: it may be empty.",
        "type": "object",
        "additionalProperties": false,
        "properties": {"reason": optional_reason()},
    })
);

schema!(
    crate::routes::RejectBody,
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["reason"],
        "properties": {"reason": text(1, MAX_REASON, "Why the order is rejected.")},
    })
);

schema!(
    crate::routes::ShipBody,
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["trackingNumber", "carrier"],
        "properties": {
            "trackingNumber": text(1, MAX_SHIPPING_TEXT, "The carrier's tracking number."),
            "carrier": text(1, MAX_SHIPPING_TEXT, "Who delivers."),
        },
        "example": {"trackingNumber": "1Z999AA10123456784", "carrier": "UPS"},
    })
);

#[cfg(test)]
mod tests {
    //! The patterns agree with the domain's validation, character class by
    //! character class and at every boundary. (A regex engine is not a
    //! dependency here: the checks use the patterns' own building blocks.)
    use super::*;
    use order_domain::{Command, LineInput, validate_line};

    #[test]
    fn every_body_schema_deserialises() {
        for schema in [
            crate::routes::ItemBody::schema(),
            crate::routes::CreateOrderBody::schema(),
            crate::routes::ReasonBody::schema(),
            crate::routes::RejectBody::schema(),
            crate::routes::ShipBody::schema(),
        ] {
            let json = serde_json::to_value(&schema).expect("serialises");
            assert!(json.is_object(), "{json}");
        }
    }

    #[test]
    fn the_currency_groups_are_the_domain_currencies() {
        let groups = currencies_by_exponent();
        let exponents: Vec<u8> = groups.iter().map(|(e, _)| *e).collect();
        assert_eq!(exponents, [0, 2, 3]);
        let all: Vec<&str> = groups.iter().flat_map(|(_, c)| c.clone()).collect();
        for code in ["USD", "JPY", "KWD", "EUR"] {
            assert!(all.contains(&code), "{code}");
        }
        assert!(!all.contains(&"XXX"));
    }

    #[test]
    fn the_price_patterns_read_as_intended() {
        assert_eq!(price_pattern(0), "^(?:0*[1-9][0-9]*)$");
        assert_eq!(
            price_pattern(2),
            r"^(?:0*[1-9][0-9]*(?:\.[0-9]{1,2})?|0+\.(?:[1-9][0-9]{0,1}|0[1-9][0-9]{0,0}))$"
        );
        assert_eq!(
            price_pattern(3),
            r"^(?:0*[1-9][0-9]*(?:\.[0-9]{1,3})?|0+\.(?:[1-9][0-9]{0,2}|0[1-9][0-9]{0,1}|00[1-9][0-9]{0,0}))$"
        );
    }

    fn line(sku: &str, name: &str, price: &str) -> LineInput {
        LineInput {
            sku: Some(sku.into()),
            product_name: Some(name.into()),
            quantity: Some(1),
            unit_price: Some(price.into()),
        }
    }

    #[test]
    fn the_domain_draws_the_lines_the_schema_draws() {
        let usd = Currency::parse("USD").expect("USD");
        let jpy = Currency::parse("JPY").expect("JPY");
        let kwd = Currency::parse("KWD").expect("KWD");
        let ok = |c, l: LineInput| validate_line(&l, c, "").is_ok();
        // lengths, counted in characters
        assert!(ok(usd, line(&"é".repeat(MAX_SKU), "n", "1")));
        assert!(!ok(usd, line(&"é".repeat(MAX_SKU + 1), "n", "1")));
        assert!(ok(usd, line("s", &"n".repeat(MAX_PRODUCT_NAME), "1")));
        assert!(!ok(usd, line("s", &"n".repeat(MAX_PRODUCT_NAME + 1), "1")));
        // blanks and controls: the classes of CONTROL and SPACE
        for blank in [" ", "\u{a0}", "\u{3000}", "\u{2028}", " \u{2009} "] {
            assert!(!ok(usd, line(blank, "n", "1")), "{blank:?}");
        }
        for control in ["\u{0}", "\u{1f}", "\u{7f}", "\u{85}", "\u{9f}", "a\tb"] {
            assert!(!ok(usd, line(control, "n", "1")), "{control:?}");
        }
        for fine in ["\u{a1}", "\u{180e}", "a b", "\u{200b}"] {
            assert!(ok(usd, line(fine, "n", "1")), "{fine:?}");
        }
        // prices: the alternatives of price_pattern (and, past 64-bit minor
        // units, the documented 422 the pattern cannot state)
        for (currency, good, bad) in [
            (
                jpy,
                vec!["1", "007", "9223372036854775807"],
                vec!["0", "1.0", "9223372036854775808", ".5"],
            ),
            (
                usd,
                vec!["0.01", "00.10", "1.5", "999999999.99", "0001"],
                vec!["0.00", "0", "1.", "1.001", "+1", "-1", "1e3", " 1"],
            ),
            (
                kwd,
                vec!["0.001", "0.010", "12.345"],
                vec!["0.000", "0.0001"],
            ),
        ] {
            for price in good {
                assert!(ok(currency, line("s", "n", price)), "{price} {currency}");
            }
            for price in bad {
                assert!(!ok(currency, line("s", "n", price)), "{price} {currency}");
            }
        }
        // optional reasons: blank (any length) is none; text is checked
        assert_eq!(Command::optional_reason(Some(&" ".repeat(5000))), Ok(None));
        assert_eq!(
            Command::optional_reason(Some("\t\r\n\u{85}\u{3000}")),
            Ok(None)
        );
        assert!(Command::optional_reason(Some("\u{1c}")).is_err());
        assert!(Command::optional_reason(Some(&"r".repeat(MAX_REASON))).is_ok());
        assert!(Command::optional_reason(Some(&"r".repeat(MAX_REASON + 1))).is_err());
        assert!(Command::reject(Some(&"r".repeat(MAX_REASON + 1))).is_err());
        assert!(Command::ship(Some(&"t".repeat(MAX_SHIPPING_TEXT)), Some("c")).is_ok());
        assert!(Command::ship(Some(&"t".repeat(MAX_SHIPPING_TEXT + 1)), Some("c")).is_err());
        let customer = "c".repeat(MAX_CUSTOMER_ID + 1);
        let items = [line("s", "n", "1")];
        assert!(Command::create_order(uuid::Uuid::nil(), &customer, "USD", &items).is_err());
        let customer = "c".repeat(MAX_CUSTOMER_ID);
        assert!(Command::create_order(uuid::Uuid::nil(), &customer, "USD", &items).is_ok());
    }
}
