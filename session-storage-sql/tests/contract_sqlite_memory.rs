//! The core contract suite against SqliteStore (memory database).
#![cfg(feature = "sqlite")]

#[path = "common/sqlite.rs"]
mod lite;

session_core::store_contract_tests!(crate::lite::MemoryHarness);
