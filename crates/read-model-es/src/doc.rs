//! The indexed document of one order, and the words search matches.
//!
//! One document per order, `_id` = order id, `_version` = the order's stream
//! version (external versioning, see `lib.rs`). Next to the full domain `Order`
//! (`doc`, not indexed: what `get` and the projector read back) it holds copies of
//! the fields queries filter, sort and aggregate on.
//!
//! **Search words are made here, not by an Elasticsearch analyzer.** The search
//! must find exactly what the embedded store's FTS5 finds (DESIGN §7). FTS5's
//! `unicode61` tokenizer with `tokenchars '-_'` makes tokens of letters, digits,
//! `-` and `_`, case-folded and without diacritics, and a query word matches a
//! token it is a prefix of. The same rule is written once in Rust ([`words`]) and
//! applied to both sides: the document's `words` (a `keyword` array) and the
//! query's words (turned into `prefix` queries on that field). No analysis plugin
//! is needed, which matters: the Elasticsearch distribution of our tests (the
//! integ-test zip) has no `analysis-common` module, so neither the `pattern`
//! tokenizer nor `word_delimiter` nor `asciifolding` exist there.
//!
//! **Money is exact.** `totalMinor` is the integer total. Elasticsearch's `sum`
//! aggregation adds doubles, exact only below 2^53, so the total is also indexed
//! in three parts that every sum keeps below 2^53: `u = total + 2^63` (so it is
//! non-negative, in `[0, 2^64)`), cut into 22 + 21 + 21 bits (`p0`, `p1`, `p2`).
//! Over `n` documents a part's sum is below `n * 2^22`, an integer that a double
//! holds exactly while `n <= 2^31`; every partial sum on the way is such an
//! integer too, so no rounding happens anywhere. The exact total is recombined in
//! `i128`: `Σp0 + Σp1 * 2^22 + Σp2 * 2^43 - n * 2^63`.

use order_domain::Order;
use order_read_model::{cursor::time_key, search};
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Bits of the three total parts, low to high.
pub(crate) const PART_BITS: [u32; 3] = [22, 21, 21];

/// The most documents a sum aggregation may add up and stay exact (see the module doc).
pub(crate) const MAX_EXACT_SUM_DOCS: u64 = 1 << 31;

/// The body indexed for `order`.
/// Appends the `_bulk` lines that index `order` at its stream version
/// (external versioning: an older or repeated write is refused with 409).
pub(crate) fn push_index_lines(body: &mut String, order: &Order) {
    let action = serde_json::json!({ "index": {
        "_id": order.id.to_string(),
        "version": order.version,
        "version_type": "external",
    } });
    body.push_str(&action.to_string());
    body.push('\n');
    body.push_str(&document(order).to_string());
    body.push('\n');
}

pub(crate) fn document(order: &Order) -> Value {
    let id = order.id.to_string();
    let mut all_words = words(&id);
    all_words.extend(words(&order.customer_id));
    all_words.extend(words(&search::terms(order)));
    all_words.sort();
    all_words.dedup();
    let [p0, p1, p2] = total_parts(order.total);
    json!({
        "orderId": id,
        "customerId": order.customer_id,
        "status": order.status.as_str(),
        "currency": order.currency.code(),
        "createdAt": time_key(&order.created_at),
        "updatedAt": time_key(&order.updated_at),
        "totalMinor": order.total,
        "totalParts": { "p0": p0, "p1": p1, "p2": p2 },
        "words": all_words,
        "doc": order,
    })
}

/// `total + 2^63` cut into [`PART_BITS`].
pub(crate) fn total_parts(total: i64) -> [u64; 3] {
    // Flipping the sign bit of the two's complement is adding 2^63 modulo 2^64.
    let u = (total as u64) ^ (1 << 63);
    let mut parts = [0; 3];
    let mut shift = 0;
    for (part, bits) in parts.iter_mut().zip(PART_BITS) {
        *part = (u >> shift) & ((1 << bits) - 1);
        shift += bits;
    }
    parts
}

/// The exact sum of `n` totals from the sums of their parts.
pub(crate) fn recombine(part_sums: [u64; 3], n: u64) -> i128 {
    let mut sum: i128 = 0;
    let mut shift = 0;
    for (s, bits) in part_sums.into_iter().zip(PART_BITS) {
        sum += i128::from(s) << shift;
        shift += bits;
    }
    sum - (i128::from(n) << 63)
}

/// The tokens of `text` as FTS5's `unicode61` tokenizer with `tokenchars '-_'`
/// makes them: runs of letters, digits, `-` and `_`, lower-cased, with diacritics
/// removed (decomposed, combining marks dropped).
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !is_token_char(c))
        .filter(|w| !w.is_empty())
        .map(fold)
        .filter(|w| !w.is_empty())
        .collect()
}

/// Lower case without diacritics.
pub(crate) fn fold(word: &str) -> String {
    word.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_recombine_exactly_at_the_extremes() {
        for values in [
            vec![0i64],
            vec![i64::MAX, i64::MAX, i64::MAX],
            vec![i64::MIN, 1, -1],
            vec![9_000_000_000_000_000_000, 1, 2, 3],
            vec![123_456_789, -987_654_321],
        ] {
            let mut sums = [0u64; 3];
            for v in &values {
                for (s, p) in sums.iter_mut().zip(total_parts(*v)) {
                    *s += p;
                }
            }
            let exact: i128 = values.iter().map(|&v| i128::from(v)).sum();
            assert_eq!(recombine(sums, values.len() as u64), exact, "{values:?}");
        }
        // Each part fits its bits, so n of them sum below n * 2^22.
        let parts = total_parts(-1);
        assert!(parts.iter().all(|&p| p < 1 << 22));
    }

    #[test]
    fn words_are_fts5_tokens() {
        assert_eq!(
            words("Blue mug, SKU-300 ABC_777 (Crème) 日本"),
            ["blue", "mug", "sku-300", "abc_777", "creme", "日本"]
        );
        assert!(words("\"*( )").is_empty());
    }
}
