//! The Elasticsearch read store against the shared `ReadStore` conformance suite:
//! the very behaviour tests the SQLite store passes, on the real cluster.

mod support;

use order_read_model::read_store_conformance_tests;

read_store_conformance_tests!(support::open());
