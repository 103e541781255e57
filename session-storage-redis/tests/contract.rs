//! The core contract suite against a standalone Redis
//! (`SESSION_TEST_REDIS_URL`).

mod common;

session_core::store_contract_tests!(common::RedisHarness<common::Standalone>);
