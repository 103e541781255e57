//! The core contract suite against SqliteStore (file database).
#![cfg(feature = "sqlite")]

#[path = "common/sqlite.rs"]
mod lite;

session_core::store_contract_tests!(crate::lite::FileHarness);
