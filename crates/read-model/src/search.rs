//! Turning user input into a safe FTS5 query, and an order into its searchable text.
//!
//! Search text is user input and is never handed to FTS5's query syntax as is:
//! a stray `"` or `AND(` would be a syntax error, and `NEAR`/`*`/`:` would change
//! the meaning. Instead the input is cut into words (runs of letters, digits, `-`
//! and `_`), each word becomes a quoted FTS5 string with a prefix match
//! (`"word"*`), and the words are ANDed. Inside a quoted string FTS5 treats every
//! character literally, and our words contain no `"`, so no input can change the
//! query's structure.

use crate::ReadError;
use order_domain::Order;
use uuid::Uuid;

/// More words than this is not a search anyone types; refuse rather than build a
/// huge query. The API caps the text at 200 characters, which holds at most 100
/// words, so through the API this is never reached: the documented `maxLength`
/// is the whole rule.
pub const MAX_WORDS: usize = 100;

/// A parsed search: the FTS5 expression (if the input had any words) and the
/// values to compare with order id and customer id for exact matches.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words of the input, trimmed of leading and trailing `-` and `_`; every
    /// one must match (as a prefix of some token).
    pub words: Vec<String>,
    pub fts: Option<String>,
    /// The trimmed input, for an exact customer id match.
    pub exact: String,
    /// The input as an order id in its stored form (lower-case, hyphenated) when it is one.
    pub exact_order_id: String,
}

impl SearchQuery {
    pub fn parse(text: &str) -> Result<SearchQuery, ReadError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ReadError::InvalidQuery(
                "the search text is blank".to_string(),
            ));
        }
        let words: Vec<&str> = trimmed
            .split(|c: char| !is_word_char(c))
            .map(|w| w.trim_matches(['-', '_']))
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() > MAX_WORDS {
            return Err(ReadError::InvalidQuery(format!(
                "the search text has {} words; at most {MAX_WORDS} are allowed",
                words.len()
            )));
        }
        let fts = (!words.is_empty()).then(|| {
            words
                .iter()
                .map(|w| format!("\"{w}\"*"))
                .collect::<Vec<_>>()
                .join(" AND ")
        });
        let exact_order_id = Uuid::parse_str(trimmed)
            .map(|id| id.to_string())
            .unwrap_or_else(|_| trimmed.to_string());
        Ok(SearchQuery {
            words: words.iter().map(|w| w.to_string()).collect(),
            fts,
            exact: trimmed.to_string(),
            exact_order_id,
        })
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// The searchable text of an order besides its ids: product names and SKUs, and
/// for those containing `-` or `_` also their parts, so that `SKU-123` (indexed as
/// one token, the tokenizer keeps `-` and `_`) is found by `sku` and `123` too.
pub fn terms(order: &Order) -> String {
    let mut terms: Vec<String> = Vec::with_capacity(order.lines.len() * 2 + 1);
    let mut parts: Vec<String> = Vec::new();
    let texts = order
        .lines
        .iter()
        .flat_map(|l| [l.product_name.as_str(), l.sku.as_str()])
        .chain([order.customer_id.as_str()]);
    for (i, text) in texts.enumerate() {
        // The customer id has its own column; only its parts go here.
        if i < order.lines.len() * 2 {
            terms.push(text.to_string());
        }
        if text.contains(['-', '_']) {
            parts.push(text.replace(['-', '_'], " "));
        }
    }
    terms.extend(parts);
    terms.join(" \n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_quoted_prefix_terms() {
        let q = SearchQuery::parse("  red SKU-12 ").unwrap();
        assert_eq!(q.fts.as_deref(), Some("\"red\"* AND \"SKU-12\"*"));
        assert_eq!(q.exact, "red SKU-12");
    }

    #[test]
    fn syntax_characters_never_reach_fts() {
        let q = SearchQuery::parse("\"a\" AND( NEAR(b c) * -x- ^y:z").unwrap();
        let fts = q.fts.unwrap();
        assert_eq!(
            fts,
            "\"a\"* AND \"AND\"* AND \"NEAR\"* AND \"b\"* AND \"c\"* AND \"x\"* AND \"y\"* AND \"z\"*"
        );
        assert_eq!(SearchQuery::parse("\"").unwrap().fts, None);
        assert_eq!(SearchQuery::parse("*").unwrap().fts, None);
    }

    #[test]
    fn blank_and_huge_queries_are_refused() {
        assert!(matches!(
            SearchQuery::parse(" \t\n"),
            Err(ReadError::InvalidQuery(_))
        ));
        let many = vec!["w"; MAX_WORDS + 1].join(" ");
        assert!(matches!(
            SearchQuery::parse(&many),
            Err(ReadError::InvalidQuery(_))
        ));
    }

    #[test]
    fn order_ids_are_normalised_for_exact_match() {
        let id = Uuid::new_v4();
        let q = SearchQuery::parse(&id.to_string().to_uppercase()).unwrap();
        assert_eq!(q.exact_order_id, id.to_string());
    }
}
