//! The core contract suite against real Postgres
//! (`SESSION_TEST_POSTGRES_URL`).
#![cfg(feature = "postgres")]

#[path = "common/postgres.rs"]
mod pg;

session_core::store_contract_tests!(crate::pg::PgHarness);
