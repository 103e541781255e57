//! `MemoryStore` load and update against a plain `RwLock<HashMap>` holding
//! the same values, measured in the same run. `cargo xtask bench memory`
//! prints the median ratios.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use session_core::{
    MemoryStore, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version,
};

const SESSIONS: usize = 10_000;

/// Polls a future that completes without waiting (every MemoryStore call).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("MemoryStore future did not complete at once"),
    }
}

type Baseline = RwLock<HashMap<SessionId, (Version, Metadata)>>;

fn setup() -> (Vec<SessionId>, Metadata, MemoryStore, Arc<Baseline>) {
    let md = Metadata::from_pairs([
        ("vmcp.backend.ids", "github,jira,slack"),
        (
            "vmcp.backend.session.github",
            "4f0c2a4e-1b8a-4c1f-9a51-0d7f4b1f7c21",
        ),
        (
            "vmcp.backend.session.jira",
            "b7a9e0d2-6c55-4b0e-8a8f-3c2d1e0f9a12",
        ),
        ("vmcp.identity.binding", "https://idp.example\0alice"),
    ])
    .unwrap();
    let store = MemoryStore::new(StoreConfig::new(Duration::from_secs(3600)).unwrap());
    let baseline = Baseline::default();
    let ids: Vec<SessionId> = (0..SESSIONS).map(|_| SessionId::generate()).collect();
    for id in &ids {
        ready(store.create(id, &md, Ttl::Default)).unwrap().unwrap();
        baseline
            .write()
            .unwrap()
            .insert(id.clone(), (Version::INITIAL, md.clone()));
    }
    (ids, md, store, Arc::new(baseline))
}

fn baseline_load(b: &Baseline, id: &SessionId) -> Option<(Version, Metadata)> {
    b.read().unwrap().get(id).cloned()
}

fn baseline_update(b: &Baseline, id: &SessionId, expected: Version, md: &Metadata) -> Update {
    let mut map = b.write().unwrap();
    match map.get_mut(id) {
        Some((v, _)) if *v != expected => Update::Conflict { current: *v },
        Some((v, m)) => {
            *v = v.next();
            *m = md.clone();
            Update::Applied(*v)
        }
        None => Update::Missing,
    }
}

/// Runs `op` `iters` times split over two threads; wall time.
fn two_threads(iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let op = &op;
            s.spawn(move || {
                for i in 0..iters / 2 {
                    op(usize::try_from(i).unwrap() * 2 + t);
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let (ids, md, store, baseline) = setup();
    let n = ids.len();

    let mut g = c.benchmark_group("memory_load");
    let mut i = 0;
    g.bench_function("baseline", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            baseline_load(&baseline, &ids[i])
        });
    });
    g.bench_function("memory_store", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            ready(store.load(&ids[i])).unwrap()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("memory_update");
    let mut versions = vec![Version::INITIAL; n];
    let mut base_versions = vec![Version::INITIAL; n];
    g.bench_function("baseline", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            let Update::Applied(v) = baseline_update(&baseline, &ids[i], base_versions[i], &md)
            else {
                panic!("baseline conflict")
            };
            base_versions[i] = v;
        });
    });
    g.bench_function("memory_store", |b| {
        b.iter(|| {
            i = (i + 1) % n;
            let Update::Applied(v) = ready(store.update(&ids[i], versions[i], &md)).unwrap() else {
                panic!("store conflict")
            };
            versions[i] = v;
        });
    });
    g.finish();

    let mut g = c.benchmark_group("memory_load_2_threads");
    g.bench_function("baseline", |b| {
        b.iter_custom(|iters| two_threads(iters, |k| drop(baseline_load(&baseline, &ids[k % n]))));
    });
    g.bench_function("memory_store", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |k| drop(ready(store.load(&ids[k % n])).unwrap()))
        });
    });
    g.finish();

    let mut g = c.benchmark_group("memory_touch_load_mix_2_threads");
    // Half the calls write (touch) — where one global lock would serialise.
    g.bench_function("baseline", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |k| {
                if k % 2 == 0 {
                    drop(baseline_load(&baseline, &ids[k % n]));
                } else if let Some((_, m)) = baseline.write().unwrap().get_mut(&ids[k % n]) {
                    std::hint::black_box(m);
                }
            })
        });
    });
    g.bench_function("memory_store", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |k| {
                if k % 2 == 0 {
                    drop(ready(store.load(&ids[k % n])).unwrap());
                } else {
                    ready(store.touch(&ids[k % n])).unwrap();
                }
            })
        });
    });
    g.finish();
}

/// Alternates batches of baseline and store calls so both see the same
/// machine load, and prints the median per-call times and their ratio.
/// On a shared, noisy machine this ratio is steadier than comparing two
/// criterion runs taken seconds apart.
fn interleaved() {
    const ROUNDS: usize = 301;
    const BATCH: usize = 2_000;
    let (ids, md, store, baseline) = setup();
    let n = ids.len();
    let mut versions = vec![Version::INITIAL; n];
    let mut base_versions = vec![Version::INITIAL; n];
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let time = |f: &mut dyn FnMut(usize)| {
        let start = Instant::now();
        for k in 0..BATCH {
            f(k);
        }
        start.elapsed().as_secs_f64() * 1e9 / BATCH as f64
    };
    println!("\ninterleaved medians ({ROUNDS} rounds x {BATCH} calls):");
    let mut offset = 0;
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        offset = (offset + BATCH) % n;
        b.push(time(&mut |k| {
            drop(baseline_load(&baseline, &ids[(offset + k) % n]));
        }));
        s.push(time(&mut |k| {
            drop(ready(store.load(&ids[(offset + k) % n])).unwrap());
        }));
    }
    let (b, s) = (median(b), median(s));
    println!(
        "  load:   baseline {b:.0} ns, MemoryStore {s:.0} ns, ratio {:.2}x",
        s / b
    );
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        offset = (offset + BATCH) % n;
        b.push(time(&mut |k| {
            let i = (offset + k) % n;
            let Update::Applied(v) = baseline_update(&baseline, &ids[i], base_versions[i], &md)
            else {
                panic!("baseline conflict")
            };
            base_versions[i] = v;
        }));
        s.push(time(&mut |k| {
            let i = (offset + k) % n;
            let Update::Applied(v) = ready(store.update(&ids[i], versions[i], &md)).unwrap() else {
                panic!("store conflict")
            };
            versions[i] = v;
        }));
    }
    let (b, s) = (median(b), median(s));
    println!(
        "  update: baseline {b:.0} ns, MemoryStore {s:.0} ns, ratio {:.2}x",
        s / b
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        interleaved();
    }
}
