//! Network fault cases every store runs through a [`FaultProxy`](crate::FaultProxy) (like the
//! contract suite, one generic function per case; each store's tests give
//! it a store whose URLs dial the proxies, as a [`Network`]). They assert what must hold under
//! faults, never how fast: timings are bounded only generously, to catch a
//! hang, and returned so tests can print them.
//!
//! What they hold a store to:
//!
//! - every operation during a blackhole ends within its configured timeout
//!   plus [`HANG_MARGIN`] with a transient error (`Timeout` or
//!   `Unavailable`), never a hang or a panic;
//! - only transient errors while connections are reset, and the store
//!   recovers by itself once the fault clears;
//! - a change stream whose connection stalls reports the gap
//!   ([`Change::Resync`]) and delivers again after;
//! - a write whose reply is lost was applied at most once: the caller got
//!   the right result or a transient error, a retry never applies it again,
//!   and no acknowledged write is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use session_core::{
    Change, ChangeStream, Error, Metadata, Record, SessionId, SessionStore, Ttl, Update, Version,
};

use crate::Network;

/// Added to a configured timeout before an operation counts as hung.
pub const HANG_MARGIN: Duration = Duration::from_secs(5);

/// How long a store may take to recover once a fault clears before the
/// test fails (catches a store that never recovers, not a slow one).
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// The field the cases count applied writes in.
const N: &str = "n";

fn counted(n: u64) -> Metadata {
    Metadata::new()
        .with(N, n.to_string())
        .expect("valid metadata")
}

fn count(record: &Record) -> u64 {
    record
        .metadata
        .get(N)
        .and_then(|v| v.parse().ok())
        .expect("a record written by a fault case has a count")
}

/// Panics unless `err` is an error a network fault may cause.
pub fn assert_fault_error(what: &str, err: &Error) {
    assert!(
        err.is_transient(),
        "{what}: a network fault gave a non-transient error: {err:?}"
    );
}

/// Runs `op`, panicking if it takes longer than `limit`.
async fn bounded<T>(what: &str, limit: Duration, op: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, op).await {
        Ok(out) => out,
        Err(elapsed) => panic!("{what} hung for more than {limit:?} ({elapsed})"),
    }
}

/// Retries `op` while it fails transiently (the store reconnecting after a
/// fault); panics on any other error or after [`RECOVERY_BOUND`].
pub async fn settled<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    loop {
        match bounded(what, RECOVERY_BOUND, op()).await {
            Ok(out) => return out,
            Err(e) => assert_fault_error(what, &e),
        }
        assert!(
            started.elapsed() < RECOVERY_BOUND,
            "{what}: no recovery within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Time from now until `store` answers a read again.
async fn recovery(store: &dyn SessionStore, probe: &SessionId) -> Duration {
    let started = Instant::now();
    settled("the first read after the fault", || store.version(probe)).await;
    started.elapsed()
}

/// A blackhole longer than the operation timeout: every operation returns
/// a transient error within `timeout` + [`HANG_MARGIN`]; after the
/// blackhole the store recovers by itself and a write held back during it
/// was applied at most once. Returns the time from the end of the
/// blackhole to the first successful read.
pub async fn paused_ops_time_out(
    store: &dyn SessionStore,
    proxy: &(impl Network + ?Sized),
    timeout: Duration,
) -> Duration {
    let id = SessionId::generate();
    let doomed = SessionId::generate();
    for s in [&id, &doomed] {
        let created = store.create(s, &counted(0), Ttl::Default).await;
        assert_eq!(created.unwrap(), Some(Version::INITIAL));
    }
    proxy.pause();
    let limit = timeout + HANG_MARGIN;
    let fresh = SessionId::generate();
    let started = Instant::now();
    let results: Vec<(&str, Result<(), Error>)> = vec![
        (
            "create",
            bounded(
                "create",
                limit,
                store.create(&fresh, &counted(0), Ttl::Default),
            )
            .await
            .map(drop),
        ),
        (
            "load",
            bounded("load", limit, store.load(&id)).await.map(drop),
        ),
        (
            "peek",
            bounded("peek", limit, store.peek(&id)).await.map(drop),
        ),
        (
            "version",
            bounded("version", limit, store.version(&id))
                .await
                .map(drop),
        ),
        (
            "update",
            bounded(
                "update",
                limit,
                store.update(&id, Version::INITIAL, &counted(1)),
            )
            .await
            .map(drop),
        ),
        (
            "touch",
            bounded("touch", limit, store.touch(&id)).await.map(drop),
        ),
        (
            "delete",
            bounded("delete", limit, store.delete(&doomed))
                .await
                .map(drop),
        ),
        (
            "scan",
            bounded("scan", limit, store.scan(None, 10)).await.map(drop),
        ),
    ];
    let failing = started.elapsed();
    for (what, result) in &results {
        match result {
            Ok(()) => panic!("{what} succeeded through a blackhole"),
            Err(e) => assert_fault_error(what, e),
        }
    }
    let kinds: Vec<String> = results
        .iter()
        .map(|(what, r)| match r {
            Err(Error::Timeout(d)) => format!("{what}: Timeout({d:?})"),
            Err(Error::Unavailable(_)) => format!("{what}: Unavailable"),
            other => format!("{what}: {other:?}"),
        })
        .collect();
    eprintln!(
        "blackhole: {} operations failed in {failing:?}: {kinds:?}",
        results.len()
    );
    proxy.resume();
    let took = recovery(store, &id).await;
    // The held update may have reached the server after the blackhole, but
    // once at most.
    let record = settled("load after the blackhole", || store.load(&id))
        .await
        .expect("the session survives a blackhole");
    assert!(record.version <= Version::new(2), "{record:?}");
    assert_eq!(count(&record), record.version.get() - 1, "{record:?}");
    let _ = settled("cleanup", || store.delete(&id)).await;
    let _ = settled("cleanup", || store.delete(&doomed)).await;
    let _ = settled("cleanup", || store.delete(&fresh)).await;
    took
}

/// What one writer of [`resets_under_load`] saw.
#[derive(Debug)]
struct Writer {
    id: SessionId,
    /// The last version an `update` acknowledged.
    acked: Version,
    ok: u64,
    errors: u64,
    /// Successful operations after the last reset.
    ok_after: u64,
}

/// One writer: the only writer of its session, it reads the session, writes
/// the count plus one at the version read, and checks after every read that
/// the count equals the version minus one (no write applied twice) and that
/// the version is at least the last acknowledged one (no acknowledged write
/// lost).
async fn write_loop(
    store: Arc<dyn SessionStore>,
    stop: Arc<AtomicBool>,
    calm: Arc<AtomicBool>,
    recovered: Arc<AtomicUsize>,
) -> Writer {
    let id = SessionId::generate();
    let mut w = Writer {
        id: id.clone(),
        acked: Version::INITIAL,
        ok: 0,
        errors: 0,
        ok_after: 0,
    };
    // A create whose reply was lost may have been applied: `None` then.
    let zero = counted(0);
    let created = settled("create", || store.create(&id, &zero, Ttl::Default)).await;
    assert!(matches!(created, Some(Version::INITIAL) | None));
    while !stop.load(Ordering::SeqCst) {
        let record = match store.load(&id).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("session {id} vanished under connection resets"),
            Err(e) => {
                assert_fault_error("load", &e);
                w.errors += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        assert_eq!(count(&record), record.version.get() - 1, "applied twice");
        assert!(record.version >= w.acked, "an acknowledged write was lost");
        match store
            .update(&id, record.version, &counted(count(&record) + 1))
            .await
        {
            Ok(Update::Applied(v)) => {
                assert_eq!(v, record.version.next());
                w.acked = v;
                w.ok += 1;
                if calm.load(Ordering::SeqCst) {
                    w.ok_after += 1;
                    if w.ok_after == 1 {
                        recovered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            // An earlier write of ours, its reply lost, landed after the
            // read: the next read shows it.
            Ok(Update::Conflict { .. }) => {}
            Ok(other) => panic!("update under resets: {other:?}"),
            Err(e) => {
                assert_fault_error("update", &e);
                w.errors += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    w
}

/// Writers of [`resets_under_load`].
const WRITERS: usize = 4;

/// Four writers run while every live connection is reset every 100 ms for
/// `faulty`: only transient errors, and every writer succeeds again after
/// the last reset. Returns the time from the last reset to the first
/// successful read.
pub async fn resets_under_load(
    store: Arc<dyn SessionStore>,
    proxy: &(impl Network + ?Sized),
    faulty: Duration,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let calm = Arc::new(AtomicBool::new(false));
    let recovered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            tokio::spawn(write_loop(
                store.clone(),
                stop.clone(),
                calm.clone(),
                recovered.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let until = Instant::now() + faulty;
    while Instant::now() < until {
        proxy.reset_all();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.reset_all();
    let probe = SessionId::generate();
    let took = recovery(&*store, &probe).await;
    calm.store(true, Ordering::SeqCst);
    // Every writer completes a write after the fault.
    let deadline = Instant::now() + RECOVERY_BOUND;
    while recovered.load(Ordering::SeqCst) < WRITERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut errors = 0;
    for handle in writers {
        let w = bounded("a writer", RECOVERY_BOUND, handle).await.unwrap();
        assert!(
            w.ok_after > 0,
            "a writer made no write after the resets: {w:?}"
        );
        errors += w.errors;
        let id = w.id.clone();
        let record = settled("final load", || store.load(&id))
            .await
            .expect("the session survives");
        assert!(
            record.version >= w.acked,
            "an acknowledged write was lost: {w:?}"
        );
        assert_eq!(count(&record), record.version.get() - 1, "applied twice");
        let _ = settled("cleanup", || store.delete(&id)).await;
    }
    assert!(
        proxy.stats().resets > 0,
        "no connection was reset: the fault did not fire"
    );
    eprintln!("resets under load: {errors} transient errors, recovered in {took:?}");
    took
}

/// The next change for `id` or a resync/down marker, within `limit`.
async fn next_signal(stream: &mut ChangeStream, limit: Duration) -> Option<Change> {
    tokio::time::timeout(limit, stream.recv())
        .await
        .ok()
        .flatten()
}

/// The change stream of `watcher` (whose connections go through `proxy`)
/// stalls for `stall` while `writer` (connected directly) updates a
/// session: the stream must report a [`Change::Resync`] for the gap, and
/// deliver writes again after the stall. Returns the time from the end of
/// the stall until a write made after it is delivered.
pub async fn stalled_stream_resyncs(
    watcher: &dyn SessionStore,
    writer: &dyn SessionStore,
    proxy: &(impl Network + ?Sized),
    stall: Duration,
) -> Duration {
    let mut stream = watcher.changes().expect("the store has a change stream");
    let id = SessionId::generate();
    assert_eq!(
        writer.create(&id, &counted(0), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
    // The stream is live: a write is delivered.
    let mut version = Version::INITIAL;
    delivered(writer, &mut stream, &id, &mut version, RECOVERY_BOUND).await;
    proxy.pause();
    let paused = Instant::now();
    let during = writer
        .update(&id, version, &counted(version.get()))
        .await
        .unwrap();
    assert_eq!(during, Update::Applied(version.next()));
    version = version.next();
    let mut resync = None;
    while paused.elapsed() < stall {
        let left = stall.saturating_sub(paused.elapsed());
        if let Some(Change::Resync) = next_signal(&mut stream, left).await {
            resync.get_or_insert(paused.elapsed());
        }
    }
    proxy.resume();
    let (took, late) = delivered(writer, &mut stream, &id, &mut version, RECOVERY_BOUND).await;
    let resync = resync
        .or(late.map(|t| stall + t))
        .expect("a stalled change stream reported no resync");
    eprintln!(
        "stalled stream: resync {resync:?} after the stall began, delivering again {took:?} after it ended"
    );
    let _ = settled("cleanup", || writer.delete(&id)).await;
    took
}

/// Writes (count + 1) until one of the writes is seen on `stream`; returns
/// the time taken and, if a resync was seen on the way, when.
async fn delivered(
    writer: &dyn SessionStore,
    stream: &mut ChangeStream,
    id: &SessionId,
    version: &mut Version,
    limit: Duration,
) -> (Duration, Option<Duration>) {
    let started = Instant::now();
    let mut resync = None;
    loop {
        assert!(
            started.elapsed() < limit,
            "the change stream never delivered again"
        );
        let (at, md) = (*version, counted(version.get()));
        let applied = settled("update", || writer.update(id, at, &md)).await;
        assert_eq!(applied, Update::Applied(version.next()));
        *version = version.next();
        let wanted = *version;
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(500) {
            match next_signal(stream, Duration::from_millis(500)).await {
                Some(Change::Written {
                    id: got,
                    version: v,
                }) if &got == id && v == wanted => {
                    return (started.elapsed(), resync);
                }
                Some(Change::Resync) => {
                    resync.get_or_insert(started.elapsed());
                }
                _ => {}
            }
        }
    }
}

/// What one write of [`dropped_replies`] saw.
#[derive(Debug, Clone, Copy)]
pub struct DropOutcome {
    /// The write.
    pub op: &'static str,
    /// The caller got a (transient) error.
    pub errored: bool,
    /// The write was applied (once: more is a failure of the case).
    pub applied: bool,
    /// The caller got the right result or a transient error. `false` when
    /// a transparent retry answered instead (a Redis Cluster client
    /// re-sends a command whose connection broke: `create` then says the
    /// id is taken, `update` reports a conflict, `delete` finds nothing,
    /// for a write that was applied once).
    pub honest: bool,
}

/// What [`dropped_replies`] saw, per write.
#[derive(Debug, Default)]
pub struct DropReport {
    /// One per write, in order: create, update, touch, delete.
    pub outcomes: Vec<DropOutcome>,
}

impl DropReport {
    /// Writes that were applied although their caller got an error.
    pub fn applied_unacknowledged(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.errored && o.applied)
            .count()
    }

    /// Every caller got the right result or a transient error.
    pub fn all_honest(&self) -> bool {
        self.outcomes.iter().all(|o| o.honest)
    }

    fn push(&mut self, op: &'static str, errored: bool, applied: bool, honest: bool) {
        self.outcomes.push(DropOutcome {
            op,
            errored,
            applied,
            honest,
        });
    }
}

/// Runs every write once on a scratch session, on the connection the next
/// request will use (a lost reply resets the connection, so this runs
/// before each case): scripts are loaded and statements prepared, so the
/// request whose reply is lost is the write itself, not a handshake or a
/// statement preparation.
async fn warm_up(store: &dyn SessionStore) {
    let warm = SessionId::generate();
    let zero = counted(0);
    let one = counted(1);
    settled("warm-up", || store.create(&warm, &zero, Ttl::Default)).await;
    let _ = settled("warm-up", || store.update(&warm, Version::INITIAL, &one)).await;
    settled("warm-up", || store.touch(&warm)).await;
    settled("warm-up", || store.load(&warm)).await;
    settled("warm-up", || store.delete(&warm)).await;
    settled("warm-up", || store.version(&warm)).await;
}

/// For each write (create, update, touch, delete): the proxy forwards the
/// request and loses its reply. The caller gets the right result or a
/// transient error; the write was applied at most once; a retry of the
/// same call does not apply it again (it returns the original outcome or,
/// without idempotency tokens, the conflict that shows it was applied).
pub async fn dropped_replies(
    store: &dyn SessionStore,
    proxy: &(impl Network + ?Sized),
) -> DropReport {
    let mut report = DropReport::default();
    let limit = RECOVERY_BOUND;
    // create
    let id = SessionId::generate();
    warm_up(store).await;
    proxy.drop_replies_to(1, id.as_str().as_bytes());
    let first = bounded(
        "create",
        limit,
        store.create(&id, &counted(0), Ttl::Default),
    )
    .await;
    proxy.drop_replies_to(0, b"");
    let stored = settled("version", || store.version(&id)).await;
    let honest = match &first {
        Ok(v) => (*v, stored) == (Some(Version::INITIAL), Some(Version::INITIAL)),
        Err(e) => {
            assert_fault_error("create", e);
            true
        }
    };
    let zero = counted(0);
    let retry = settled("create retry", || store.create(&id, &zero, Ttl::Default)).await;
    match stored {
        // Applied once: a new create (a fresh write id) must not create it
        // again.
        Some(_) => assert_eq!(retry, None),
        None => assert_eq!(retry, Some(Version::INITIAL)),
    }
    assert_eq!(
        settled("version", || store.version(&id)).await,
        Some(Version::INITIAL)
    );
    report.push("create", first.is_err(), stored.is_some(), honest);

    // update
    warm_up(store).await;
    proxy.drop_replies_to(1, id.as_str().as_bytes());
    let first = bounded(
        "update",
        limit,
        store.update(&id, Version::INITIAL, &counted(1)),
    )
    .await;
    proxy.drop_replies_to(0, b"");
    let stored = settled("load", || store.load(&id)).await.expect("exists");
    let honest = match &first {
        Ok(u) => (*u, stored.version) == (Update::Applied(Version::new(2)), Version::new(2)),
        Err(e) => {
            assert_fault_error("update", e);
            true
        }
    };
    assert_eq!(count(&stored), stored.version.get() - 1, "{stored:?}");
    let one = counted(1);
    let retry = settled("update retry", || store.update(&id, Version::INITIAL, &one)).await;
    assert!(
        matches!(
            retry,
            Update::Applied(v) | Update::Conflict { current: v } if v == Version::new(2)
        ),
        "{retry:?}"
    );
    let after = settled("load", || store.load(&id)).await.expect("exists");
    assert_eq!(
        (after.version, count(&after)),
        (Version::new(2), 1),
        "applied twice"
    );
    report.push(
        "update",
        first.is_err(),
        stored.version == Version::new(2),
        honest,
    );

    // touch (slides only: nothing to apply twice, the version must not move)
    warm_up(store).await;
    proxy.drop_replies_to(1, id.as_str().as_bytes());
    let first = bounded("touch", limit, store.touch(&id)).await;
    proxy.drop_replies_to(0, b"");
    let honest = match &first {
        Ok(found) => *found,
        Err(e) => {
            assert_fault_error("touch", e);
            true
        }
    };
    assert_eq!(
        settled("version", || store.version(&id)).await,
        Some(Version::new(2))
    );
    // Not counted as applied: a slide cannot be told from no slide here.
    report.push("touch", first.is_err(), false, honest);

    // delete
    warm_up(store).await;
    proxy.drop_replies_to(1, id.as_str().as_bytes());
    let first = bounded("delete", limit, store.delete(&id)).await;
    proxy.drop_replies_to(0, b"");
    let stored = settled("version", || store.version(&id)).await;
    let honest = match &first {
        Ok(found) => *found && stored.is_none(),
        Err(e) => {
            assert_fault_error("delete", e);
            true
        }
    };
    let _ = settled("delete retry", || store.delete(&id)).await;
    assert_eq!(settled("version", || store.version(&id)).await, None);
    report.push("delete", first.is_err(), stored.is_none(), honest);

    assert!(
        proxy.stats().replies_dropped > 0,
        "no reply was dropped: the fault did not fire"
    );
    eprintln!("dropped replies: {report:?}");
    report
}
