//! The store contract suite on `MemoryStore`, on a manual clock so expiry
//! cases run instantly and deterministically.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use session_core::testing::{Corruption, Harness};
use session_core::{Clock, ManualClock, MemoryStore, SessionId, StoreConfig, Version};

struct MemoryHarness {
    clock: ManualClock,
    stores: Mutex<Vec<(StoreConfig, MemoryStore)>>,
}

#[async_trait]
impl Harness for MemoryHarness {
    type Store = MemoryStore;

    async fn setup() -> Self {
        Self {
            clock: ManualClock::new(),
            stores: Mutex::new(Vec::new()),
        }
    }

    async fn store(&self, config: StoreConfig) -> MemoryStore {
        // Every handle shares one store's data, whatever its config (as
        // every handle on a Redis prefix or SQL table does).
        let mut stores = self.stores.lock().unwrap();
        if let Some((_, s)) = stores.first() {
            return s.handle(config);
        }
        let s = MemoryStore::with_clock(config, self.clock.clone());
        stores.push((config, s.clone()));
        s
    }

    async fn teardown(&self) {
        self.stores.lock().unwrap().clear();
    }

    async fn sleep(&self, d: Duration) {
        self.clock.advance(d);
        tokio::task::yield_now().await;
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }

    async fn plant(&self, _id: &SessionId, _kind: Corruption) -> bool {
        // MemoryStore holds typed values; nobody else can write bytes into it.
        false
    }

    async fn raw(&self, _id: &SessionId) -> Option<String> {
        None
    }

    async fn set_version(&self, id: &SessionId, version: Version) {
        let stores = self.stores.lock().unwrap();
        let (_, s) = stores.first().expect("a store exists");
        assert!(s.force_version_for_tests(id, version), "no live record");
    }
}

session_core::store_contract_tests!(MemoryHarness);

/// The same suite on the real clock, as a check that the cases' timing
/// margins hold for a store whose time really passes.
mod real_clock {
    use super::*;

    struct RealClockHarness(MemoryHarness);

    #[async_trait]
    impl Harness for RealClockHarness {
        type Store = MemoryStore;
        async fn setup() -> Self {
            Self(MemoryHarness::setup().await)
        }
        async fn store(&self, config: StoreConfig) -> MemoryStore {
            let mut stores = self.0.stores.lock().unwrap();
            if let Some((_, s)) = stores.first() {
                return s.handle(config);
            }
            let s = MemoryStore::new(config);
            stores.push((config, s.clone()));
            s
        }
        async fn teardown(&self) {}
        fn ttl_unit(&self) -> Duration {
            Duration::from_millis(400)
        }
        async fn plant(&self, _id: &SessionId, _kind: Corruption) -> bool {
            false
        }
        async fn raw(&self, _id: &SessionId) -> Option<String> {
            None
        }
        async fn set_version(&self, id: &SessionId, version: Version) {
            self.0.set_version(id, version).await;
        }
    }

    session_core::store_contract_tests!(RealClockHarness);
}

/// The namespace-isolation check passes on two separate stores and fails
/// when both "namespaces" are one store (so it can see a leak).
#[tokio::test]
async fn isolation_check_passes_on_separate_stores_and_catches_a_shared_one() {
    use session_core::testing::isolation::assert_isolated;
    let a = MemoryStore::new(StoreConfig::default());
    let b = MemoryStore::new(StoreConfig::default());
    assert_isolated(&a, &b).await;
    let shared = tokio::spawn(async move { assert_isolated(&a, &a.clone()).await }).await;
    assert!(
        shared.is_err_and(|e| e.is_panic()),
        "one store seen as two namespaces passed"
    );
}
