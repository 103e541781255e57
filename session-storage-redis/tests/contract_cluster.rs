//! The core contract suite against a Redis Cluster
//! (`SESSION_TEST_REDIS_CLUSTER_URLS`, see `scripts/redis-cluster.sh`).
#![cfg(feature = "cluster")]

mod common;

session_core::store_contract_tests!(common::RedisHarness<common::Cluster>);
