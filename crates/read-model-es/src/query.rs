//! An [`OrderFilter`] as an Elasticsearch query, and the stats aggregations read back.
//!
//! Everything runs in filter context: nothing is scored, results are ordered by
//! the sort alone, exactly like the SQL of the embedded store.

use crate::doc::{self, MAX_EXACT_SUM_DOCS};
use chrono::{DateTime, Utc};
use order_domain::{Currency, OrderStatus};
use order_read_model::cursor::time_key;
use order_read_model::search::SearchQuery;
use order_read_model::{CurrencyStats, OrderFilter, ReadError, Stats};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Whether `t` can be compared with a `date_nanos` field (1970 to 2262).
fn in_nanos_range(t: &DateTime<Utc>) -> bool {
    t.timestamp_nanos_opt().is_some_and(|n| n >= 0)
}

/// The bool query for `filter`.
pub(crate) fn filter_query(filter: &OrderFilter) -> Result<Value, ReadError> {
    let mut clauses: Vec<Value> = Vec::new();
    let none = json!({ "match_none": {} });
    if let Some(customer) = &filter.customer_id {
        clauses.push(json!({ "term": { "customerId": customer } }));
    }
    if let Some(status) = filter.status {
        clauses.push(json!({ "term": { "status": status.as_str() } }));
    }
    // `createdAt` is `date_nanos`, which holds 1970..2262 only: every indexed order
    // lies in that range (an order outside it fails to index), so a bound outside
    // it either removes nothing or everything.
    let mut range = serde_json::Map::new();
    if let Some(from) = &filter.created_from {
        if in_nanos_range(from) {
            range.insert("gte".into(), json!(time_key(from)));
        } else if from.timestamp() > 0 {
            clauses.push(none.clone());
        }
    }
    if let Some(to) = &filter.created_to {
        if in_nanos_range(to) {
            range.insert("lt".into(), json!(time_key(to)));
        } else if to.timestamp() <= 0 {
            clauses.push(none.clone());
        }
    }
    if !range.is_empty() {
        clauses.push(json!({ "range": { "createdAt": range } }));
    }
    if let Some(text) = &filter.text {
        let query = SearchQuery::parse(text)?;
        let mut either = vec![
            json!({ "term": { "orderId": query.exact_order_id } }),
            json!({ "term": { "customerId": query.exact } }),
        ];
        if !query.words.is_empty() {
            let mut all_words = Vec::new();
            for word in &query.words {
                // Each query word is one FTS5 token; a word that folds to nothing
                // (a lone combining mark) is an empty phrase, which matches nothing.
                let tokens = doc::words(word);
                if tokens.is_empty() {
                    all_words.push(none.clone());
                }
                for token in tokens {
                    all_words.push(json!({ "prefix": { "words": token } }));
                }
            }
            either.push(json!({ "bool": { "filter": all_words } }));
        }
        clauses.push(json!({ "bool": { "should": either, "minimum_should_match": 1 } }));
    }
    Ok(json!({ "bool": { "filter": clauses } }))
}

/// The aggregations behind [`Stats`]: counts per status; per currency, the count
/// and the sums of the total parts of orders that count towards revenue.
pub(crate) fn stats_aggregations() -> Value {
    let revenue: Vec<&str> = OrderStatus::ALL
        .iter()
        .filter(|s| s.counts_towards_revenue())
        .map(|s| s.as_str())
        .collect();
    json!({
        "status": { "terms": { "field": "status", "size": 100 } },
        "currency": {
            "terms": { "field": "currency", "size": 1000 },
            "aggs": {
                "revenue": {
                    "filter": { "terms": { "status": revenue } },
                    "aggs": {
                        "p0": { "sum": { "field": "totalParts.p0" } },
                        "p1": { "sum": { "field": "totalParts.p1" } },
                        "p2": { "sum": { "field": "totalParts.p2" } }
                    }
                }
            }
        }
    })
}

fn corrupt(what: &str, v: &Value) -> ReadError {
    ReadError::Corrupt(format!("Elasticsearch stats: unexpected {what}: {v}"))
}

fn buckets<'a>(aggs: &'a Value, name: &str) -> Result<&'a Vec<Value>, ReadError> {
    let agg = &aggs[name];
    // A terms aggregation is exact when it returns every bucket.
    if agg["sum_other_doc_count"].as_u64() != Some(0) {
        return Err(corrupt("terms aggregation that left buckets out", agg));
    }
    agg["buckets"]
        .as_array()
        .ok_or_else(|| corrupt("aggregation", agg))
}

/// A sum of parts: an integral double below 2^53, so exactly an integer.
fn exact_sum(v: &Value) -> Result<u64, ReadError> {
    let x = v["value"].as_f64().ok_or_else(|| corrupt("sum", v))?;
    if !(0.0..9_007_199_254_740_992.0).contains(&x) || x.fract() != 0.0 {
        return Err(corrupt("inexact sum", v));
    }
    Ok(x as u64)
}

pub(crate) fn read_stats(aggs: &Value) -> Result<Stats, ReadError> {
    let mut by_status: BTreeMap<String, u64> = OrderStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for bucket in buckets(aggs, "status")? {
        let key = bucket["key"]
            .as_str()
            .ok_or_else(|| corrupt("status", bucket))?;
        if OrderStatus::parse(key).is_none() {
            return Err(corrupt("status", bucket));
        }
        by_status.insert(key.to_string(), bucket["doc_count"].as_u64().unwrap_or(0));
    }
    let mut by_currency = BTreeMap::new();
    for bucket in buckets(aggs, "currency")? {
        let code = bucket["key"]
            .as_str()
            .ok_or_else(|| corrupt("currency", bucket))?;
        let currency = Currency::parse(code)
            .map_err(|e| ReadError::Corrupt(format!("stored currency: {e}")))?;
        let order_count = bucket["doc_count"]
            .as_u64()
            .ok_or_else(|| corrupt("count", bucket))?;
        let revenue = &bucket["revenue"];
        let n = revenue["doc_count"]
            .as_u64()
            .ok_or_else(|| corrupt("count", revenue))?;
        if n > MAX_EXACT_SUM_DOCS {
            return Err(ReadError::Unavailable(format!(
                "{n} {code} orders are more than an exact sum of parts allows ({MAX_EXACT_SUM_DOCS})"
            )));
        }
        let sums = [
            exact_sum(&revenue["p0"])?,
            exact_sum(&revenue["p1"])?,
            exact_sum(&revenue["p2"])?,
        ];
        let total = if n == 0 { 0 } else { doc::recombine(sums, n) };
        by_currency.insert(
            code.to_string(),
            CurrencyStats {
                order_count,
                total_amount: currency.format_amount(total),
            },
        );
    }
    Ok(Stats {
        by_status,
        by_currency,
    })
}
