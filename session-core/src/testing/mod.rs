//! The backend-agnostic store contract suite and test-backend helpers.
//!
//! A store crate runs the whole suite with one macro call on a [`Harness`]:
//!
//! ```ignore
//! session_core::store_contract_tests!(my_crate::tests::RedisHarness);
//! ```
//!
//! Each case is one `#[test]`; it runs on its own multi-threaded runtime,
//! with its own harness (its own key prefix, schema or file), and the
//! harness is torn down whether the case passes or panics.

pub mod cases;
pub mod isolation;
pub mod logs;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::config::StoreConfig;
use crate::id::SessionId;
use crate::store::SessionStore;
use crate::version::Version;

/// Kinds of corruption a harness can plant for the corrupt-record case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The key holds a value of another storage type.
    WrongType,
    /// The version field is missing.
    MissingVersion,
    /// The version field is not a number.
    NonNumericVersion,
    /// The metadata is not JSON.
    MetadataNotJson,
    /// The metadata is JSON but not an object of strings.
    MetadataNotStringMap,
    /// The metadata is a valid JSON string map beyond the size limits.
    MetadataOversized,
    /// The version field holds bytes that are not UTF-8.
    NonUtf8Version,
    /// The version has a sign (`+5`).
    SignedVersion,
    /// The version is 0.
    ZeroVersion,
    /// The version is negative (-5).
    NegativeVersion,
    /// The version is 2^53 (one past [`Version::MAX`](crate::Version::MAX)).
    VersionPastMax,
    /// A record holding neither a version nor a creation time (only
    /// metadata and a TTL).
    NoVersionNoCreated,
    /// The metadata bytes are not UTF-8.
    MetadataNotUtf8,
}

impl Corruption {
    /// Every kind, in the order the contract case tries them.
    pub const ALL: [Corruption; 13] = [
        Corruption::WrongType,
        Corruption::MissingVersion,
        Corruption::NonNumericVersion,
        Corruption::MetadataNotJson,
        Corruption::MetadataNotStringMap,
        Corruption::MetadataOversized,
        Corruption::NonUtf8Version,
        Corruption::SignedVersion,
        Corruption::ZeroVersion,
        Corruption::NegativeVersion,
        Corruption::VersionPastMax,
        Corruption::NoVersionNoCreated,
        Corruption::MetadataNotUtf8,
    ];

    /// Whether the version itself is unreadable (so `version` and `update`
    /// must report the corruption too).
    pub fn breaks_version(self) -> bool {
        !matches!(
            self,
            Corruption::MetadataNotJson
                | Corruption::MetadataNotStringMap
                | Corruption::MetadataOversized
                | Corruption::MetadataNotUtf8
        )
    }
}

/// What a store crate supplies to run the contract suite: isolated storage
/// per test, handles on it, and hooks for time and raw records.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// The store under test.
    type Store: SessionStore + Clone;

    /// Whether `scan` may return a session more than once (Redis `SCAN` can).
    const SCAN_MAY_REPEAT: bool = false;

    /// Prepares isolated storage (a unique prefix, schema or file).
    async fn setup() -> Self;

    /// A handle on this harness's storage. Handles from repeated calls share
    /// data whatever their configs (a "second node", possibly deployed with
    /// another TTL or max_lifetime: `past_deadline_is_expired` needs this).
    async fn store(&self, config: StoreConfig) -> Self::Store;

    /// Removes everything [`Harness::setup`] and the cases created.
    async fn teardown(&self);

    /// Lets time pass for the store's expiry. Real stores sleep; a store on
    /// a manual clock advances it.
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Now, on the clock [`Harness::sleep`] moves.
    fn now(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    /// How long expiry cases let records live: short, but long enough that
    /// a loaded machine does not make the cases inconclusive.
    fn ttl_unit(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Writes a corrupt record for `id` directly into storage, bypassing the
    /// store. `false` if this store cannot hold such a record (typed
    /// storage) — the case then skips that kind.
    async fn plant(&self, id: &SessionId, kind: Corruption) -> bool;

    /// Cuts the connection behind `store`'s change stream from the server
    /// side, as a network failure or a server restart would, touching no
    /// other client (tests run in parallel on one server). Called only
    /// once the stream is live. `false` if this store's stream cannot lose
    /// a connection (an in-process hub) or the harness cannot cut it: the
    /// change-stream-loss case then checks nothing.
    async fn interrupt_changes(&self, store: &Self::Store) -> bool {
        let _ = store;
        false
    }

    /// The raw stored bytes of `id`'s record (content only, not expiry), to
    /// check that a failing call left it intact.
    async fn raw(&self, id: &SessionId) -> Option<String>;

    /// Sets the version of `id`'s live record (created through a store of
    /// this harness) to `version` directly in storage, for the version
    /// ceiling case. Every store must support it.
    async fn set_version(&self, id: &SessionId, version: Version);

    /// Writes a live record whose key or row id is not a valid session id
    /// (as someone else might), removed again by teardown. `false` if this
    /// store cannot hold one (typed keys): the scan case then checks only
    /// that nothing is skipped.
    async fn plant_bad_id(&self) -> bool {
        false
    }
}

/// Runs one contract case on a fresh harness; tears it down even if the
/// case panics, then re-raises the panic.
pub fn run<H, F, Fut>(case: F)
where
    H: Harness,
    F: FnOnce(Arc<H>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let harness = Arc::new(H::setup().await);
        let outcome = tokio::spawn(case(harness.clone())).await;
        harness.teardown().await;
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("contract case did not finish: {e}"),
        }
    });
}

/// The URL of a test backend from environment variable `var`.
///
/// # Panics
///
/// When it is unset, with a message that says how to provide one: tests
/// that need a backend fail loudly instead of skipping.
pub fn require_url(var: &str, example: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: these tests need a real backend. Run `cargo xtask test` \
             (it finds the local servers), or set {var}={example}"
        ),
    }
}

/// Generates one `#[test]` per contract case for a [`Harness`] type.
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[macro_export]
macro_rules! store_contract_tests {
    ($harness:ty) => {
        $crate::__contract_cases!(
            $harness;
            round_trip,
            create_never_overwrites,
            concurrent_create_has_one_winner,
            missing_id_everywhere,
            update_applied_conflict_missing,
            update_never_creates,
            delete_is_idempotent,
            load_slides_expiry_version_does_not,
            touch_slides_expiry,
            peek_does_not_slide_expiry,
            max_lifetime_caps_sliding,
            expired_record_invisible_to_every_method,
            custom_ttl_until_first_update,
            concurrent_cas_writers_lose_nothing,
            metadata_limits_hold_in_storage,
            corrupt_record_reported_and_left_intact,
            corrupt_metadata_repaired_by_cas,
            version_ceiling_is_a_typed_error,
            past_deadline_is_expired,
            scan_skips_and_counts_bad_ids,
            scan_sees_every_live_session_under_churn,
            scan_rejects_zero_limit,
            change_stream_reports_other_handles_writes,
            change_stream_signals_down_then_resync,
            retried_update_returns_its_original_outcome,
            retried_write_publishes_nothing,
            retried_create_returns_its_version,
            retried_write_after_delete_is_missing,
            write_id_text_is_checked,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run::<$harness, _, _>($crate::testing::cases::$case::<$harness>);
            }
        )*
    };
}
