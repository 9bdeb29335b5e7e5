//! Exact money: integer minor units with the currency's exponent.
//!
//! Amounts travel as decimal strings in the currency's major unit (USD `"12.34"`
//! is twelve dollars 34 cents, JPY `"1234"` is 1 234 yen) and live as `i64` minor units
//! (`1234` cents). Parsing never rounds: more fraction digits than the currency
//! allows is an error. Arithmetic is checked; callers turn `None` into an error.

use serde::{Deserialize, Serialize};
use std::fmt;

/// ISO 4217 currencies the platform knows, with their minor-unit exponent.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PLN", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UGX", 0),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// A currency known to the platform. Construct with [`Currency::parse`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// Accepts exactly three upper-case letters naming a known currency.
    pub fn parse(code: &str) -> Result<Currency, String> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("must be an ISO 4217 code: three upper-case letters".into());
        }
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(code, exponent)| Currency { code, exponent })
            .ok_or_else(|| format!("currency {code} is not supported"))
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Number of fraction digits of the minor unit (USD 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// An amount of this currency as the API writes it: 1 250 minor units, so
    /// USD `"12.50"`, JPY `"1250"`, KWD `"1.250"`. Quoted in validation messages.
    pub fn example_amount(&self) -> String {
        self.format_amount(1250)
    }

    /// Parses a decimal string in the currency's major unit, such as USD
    /// `"12.34"`, into minor units (1234).
    ///
    /// Refuses signs, exponents, blanks, more fraction digits than the currency
    /// has, and values that do not fit in `i64` minor units. The messages say
    /// the unit: a client that sends cents where dollars are meant gets an order
    /// a hundred times too expensive, so it must be told before it does.
    pub fn parse_amount(&self, text: &str) -> Result<i64, String> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(format!(
                "must be a decimal string in the currency's major unit, such as {:?} for {} {}, got {text:?}",
                self.example_amount(),
                self.example_amount(),
                self.code
            ));
        }
        if text.contains('.') && fraction.is_empty() {
            return Err(format!("has a trailing decimal point: {text:?}"));
        }
        if fraction.len() > usize::from(self.exponent) {
            return Err(format!(
                "has {} fraction digits but {} allows at most {} (amounts are in the major unit, such as {:?})",
                fraction.len(),
                self.code,
                self.exponent,
                self.example_amount()
            ));
        }
        let too_large = || format!("{text} is too large");
        let mut minor: i64 = 0;
        let padded = fraction.chars().chain(std::iter::repeat('0'));
        for c in whole.chars().chain(padded.take(usize::from(self.exponent))) {
            let digit = i64::from(c as u8 - b'0');
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(digit))
                .ok_or_else(too_large)?;
        }
        Ok(minor)
    }

    /// Formats minor units as a decimal string with exactly `exponent` fraction digits.
    pub fn format_amount(&self, minor: i128) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        if self.exponent == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u128.pow(u32::from(self.exponent));
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = usize::from(self.exponent)
        )
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code.to_string()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn parses_exact_amounts_per_exponent() {
        assert_eq!(usd().parse_amount("12.34"), Ok(1234));
        assert_eq!(usd().parse_amount("12.3"), Ok(1230));
        assert_eq!(usd().parse_amount("12"), Ok(1200));
        assert_eq!(Currency::parse("JPY").unwrap().parse_amount("500"), Ok(500));
        assert_eq!(
            Currency::parse("KWD").unwrap().parse_amount("1.234"),
            Ok(1234)
        );
    }

    #[test]
    fn refuses_extra_fraction_digits_instead_of_rounding() {
        assert!(usd().parse_amount("1.234").is_err());
        assert!(Currency::parse("JPY").unwrap().parse_amount("1.5").is_err());
    }

    #[test]
    fn refuses_malformed_amounts() {
        for bad in [
            "", "-1", "+1", "1e3", " 1", "1.", ".5", "1,00", "abc", "1.2.3",
        ] {
            assert!(usd().parse_amount(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn refusals_say_amounts_are_in_the_major_unit_with_this_currencys_example() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        for (currency, bad, example) in [
            (usd(), "12,50", "\"12.50\""),
            (usd(), "1.234", "\"12.50\""),
            (jpy, "1.5", "\"1250\""),
            (kwd, "x", "\"1.250\""),
        ] {
            let message = currency.parse_amount(bad).unwrap_err();
            assert!(message.contains("major unit"), "{message}");
            assert!(!message.contains("minor unit"), "{message}");
            assert!(message.contains(example), "{message}");
        }
    }

    #[test]
    fn refuses_amounts_that_overflow() {
        assert!(usd().parse_amount("92233720368547758.08").is_err());
        assert_eq!(usd().parse_amount("92233720368547758.07"), Ok(i64::MAX));
    }

    #[test]
    fn formats_with_the_currency_exponent() {
        assert_eq!(usd().format_amount(1234), "12.34");
        assert_eq!(usd().format_amount(5), "0.05");
        assert_eq!(Currency::parse("JPY").unwrap().format_amount(500), "500");
        assert_eq!(Currency::parse("KWD").unwrap().format_amount(1), "0.001");
    }

    #[test]
    fn knows_only_real_upper_case_codes() {
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("US").is_err());
        assert_eq!(Currency::parse("EUR").unwrap().code(), "EUR");
    }
}
