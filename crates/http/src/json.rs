//! JSON bodies to typed values, with errors a client can act on.
//!
//! serde says `invalid type: string "2", expected i64`: it names neither the
//! field nor the type in the words of JSON. Here every such error becomes a
//! 400 `invalid_json` problem whose `errors` entry names the field by its path
//! on the wire (`items[0].quantity`) and says what it must be in JSON terms
//! (`must be an integer, not the string "2"`), never a Rust type (`i64`,
//! `usize`, `struct ItemBody`).

use crate::ApiError;
use order_domain::FieldError;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// `value` as a `T`, or a 400 `invalid_json` naming the field that does not fit.
pub fn from_json_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = wire_path(e.path());
        type_error(path, &e.inner().to_string())
    })
}

/// The problem for a serde error `message` at `path` (`""` for the body itself).
pub(crate) fn type_error(path: String, message: &str) -> ApiError {
    let (field, message) = explain(path, message);
    let detail = if field.is_empty() {
        format!("the body {message}")
    } else {
        format!("{field} {message}")
    };
    let mut error = ApiError::bad_request("invalid_json", detail);
    error.errors = vec![FieldError::new(
        if field.is_empty() { "body" } else { &field },
        message,
    )];
    error
}

/// `items[0].quantity`: keys joined by dots, indexes in brackets, as clients
/// write the field in JavaScript.
fn wire_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field and what is wrong with it, from serde's message (the forms of
/// `serde::de::Error`'s provided constructors; anything else is kept as it is).
fn explain(path: String, message: &str) -> (String, String) {
    // serde_json appends a position when it reads text; the path says more.
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        let field = if path.ends_with(name) {
            path
        } else {
            join(&path, name)
        };
        let message = match known.as_slice() {
            [] => "is not a known field (this object takes no fields)".to_string(),
            known => format!("is not a known field; expected {}", known.join(", ")),
        };
        return (field, message);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return (join(&path, name), "is required".to_string());
    }
    if message.starts_with("UUID parsing failed") || message.contains("expected UUID") {
        return (
            path,
            "must be a UUID, e.g. \"0190b6e4-3c5e-7a52-9b1e-2f5c8d7e9a10\"".to_string(),
        );
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, expected)) = rest.rsplit_once(", expected ")
        {
            return (
                path,
                format!(
                    "must be {}, not {}",
                    expected_words(expected),
                    got_words(got)
                ),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        return (path, format!("must be {}", expected_words(expected)));
    }
    (path, message.to_string())
}

/// serde's `Expected` (a Rust type or a phrase) in JSON terms.
fn expected_words(expected: &str) -> String {
    let expected = expected.trim();
    let words = match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "an integer" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "f32" | "f64" | "a JSON number" | "a number" => "a number",
        "a string" | "a borrowed string" | "a char" | "char" | "string" => "a string",
        "a boolean" | "bool" => "true or false",
        "a sequence" | "a tuple" | "a list" => "an array",
        "a map" => "an object",
        "UUID" | "a UUID" => "a UUID",
        _ if expected.starts_with("struct ") || expected.starts_with("a map") => "an object",
        _ if expected.starts_with("tuple") || expected.starts_with("an array") => "an array",
        _ if expected.starts_with("enum ") => "one of the values the API document lists",
        // Already words (a custom `expecting`), unless it is a Rust type path.
        _ if expected.contains("::") => "a value of another type",
        _ => return expected.to_string(),
    };
    words.to_string()
}

/// serde's `Unexpected` (what was found) in JSON terms.
fn got_words(got: &str) -> String {
    let got = got.trim();
    let inner = |prefix: &str| {
        got.strip_prefix(prefix)
            .map(|v| v.trim_matches('`').to_string())
    };
    if let Some(s) = got.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for number in ["integer ", "floating point ", "unsigned integer "] {
        if let Some(n) = inner(number) {
            return format!("the number {n}");
        }
    }
    if let Some(b) = inner("boolean ") {
        return b;
    }
    match got {
        "unit value" | "unit" | "null" => "null".to_string(),
        "sequence" => "an array".to_string(),
        "map" => "an object".to_string(),
        // A value written by a custom error (e.g. `1.5`).
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        quantity: Option<i64>,
        unit_price: Option<String>,
        count: Option<usize>,
        big: Option<u64>,
        ratio: Option<f64>,
        urgent: Option<bool>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        order_id: Option<uuid::Uuid>,
        items: Option<Vec<Line>>,
        note: Option<String>,
    }

    /// (field, message, detail) of the error for `value`.
    fn error(value: serde_json::Value) -> (String, String, String) {
        let e = from_json_value::<Body>(&value).expect_err("refused");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "invalid_json");
        assert_eq!(e.errors.len(), 1, "{e:?}");
        let field = e.errors[0].field.clone();
        let message = e.errors[0].message.clone();
        assert!(
            e.detail.contains(&message),
            "the detail says it too: {}",
            e.detail
        );
        for rust in [
            "i64", "u64", "usize", "i32", "f64", "struct", "Line", "Body", "Uuid",
        ] {
            assert!(
                !message.contains(rust) && !e.detail.contains(rust),
                "{rust} leaked: {e:?}"
            );
        }
        (field, message, e.detail)
    }

    #[test]
    fn a_wrong_type_names_the_field_and_what_it_must_be() {
        let (field, message, detail) = error(json!({"items": [{"quantity": "2"}]}));
        assert_eq!(field, "items[0].quantity");
        assert_eq!(message, "must be an integer, not the string \"2\"");
        assert_eq!(
            detail,
            "items[0].quantity must be an integer, not the string \"2\""
        );

        let (field, message, _) = error(json!({"items": [{}, {"quantity": 1.5}]}));
        assert_eq!(field, "items[1].quantity");
        assert!(message.starts_with("must be an integer"), "{message}");

        let (field, message, _) = error(json!({"items": [{"unitPrice": 12.5}]}));
        assert_eq!(field, "items[0].unitPrice");
        assert_eq!(message, "must be a string, not the number 12.5");

        let (field, message, _) = error(json!({"items": [{"count": -1}]}));
        assert_eq!(field, "items[0].count");
        assert!(message.contains("whole number"), "{message}");

        let (_, message, _) = error(json!({"items": [{"big": "lots"}]}));
        assert!(message.contains("whole number"), "{message}");
        let (_, message, _) = error(json!({"items": [{"ratio": "half"}]}));
        assert_eq!(message, "must be a number, not the string \"half\"");
        let (_, message, _) = error(json!({"items": [{"urgent": "yes"}]}));
        assert_eq!(message, "must be true or false, not the string \"yes\"");

        let (field, message, _) = error(json!({"items": {"quantity": 1}}));
        assert_eq!(field, "items");
        assert_eq!(message, "must be an array, not an object");

        let (field, message, _) = error(json!({"items": ["A"]}));
        assert_eq!(field, "items[0]");
        assert_eq!(message, "must be an object, not the string \"A\"");

        let (field, message, _) = error(json!({"note": false}));
        assert_eq!(field, "note");
        assert_eq!(message, "must be a string, not false");
    }

    #[test]
    fn a_bad_uuid_an_unknown_field_and_a_wrong_body_are_explained() {
        let (field, message, _) = error(json!({"orderId": "not-a-uuid"}));
        assert_eq!(field, "orderId");
        assert!(message.starts_with("must be a UUID, e.g. "), "{message}");

        let (field, message, _) = error(json!({"items": [{"qty": 1}]}));
        assert_eq!(field, "items[0].qty");
        assert!(
            message.starts_with("is not a known field; expected quantity, unitPrice"),
            "{message}"
        );

        let (field, message, detail) = error(json!("order"));
        assert_eq!(field, "body");
        assert_eq!(message, "must be an object, not the string \"order\"");
        assert_eq!(
            detail,
            "the body must be an object, not the string \"order\""
        );
    }
}
