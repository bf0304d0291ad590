//! What the cross-process criterion benches share: the child side (this
//! bench binary re-executed with the bench's `CHILD_ENV` set), the pinned
//! per-process session ([`cases::CriterionEnv`]) and the measurement of one
//! started case with `iter_custom`, so criterion sees only operations, never
//! process start-up. Included with `mod common;` by each bench target.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use shmwire_bench::cases::{self, BenchEnv, CaseKind, Pair};
use shmwire_bench::harness::BenchResult;

/// The bench binary's `main`: the child side when `child_env` is set (its
/// words are the arguments), else the pinned setup, then `body` with a
/// criterion configured from the command line.
pub fn main_with(
    tag: &str,
    child_env: &str,
    child: fn(&[String]) -> BenchResult<()>,
    body: impl FnOnce(&mut Criterion, &mut BenchEnv),
) {
    if std::env::var_os(child_env).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = child(&words) {
            eprintln!("{tag} bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut setup = cases::CriterionEnv::new(tag, child_env).expect("bench setup");
    let mut c = Criterion::default().configure_from_args();
    body(&mut c, &mut setup.env);
    c.final_summary();
}

/// Measures one case, `id`, in `group`: warm-up 1 s, `measure` of
/// measurement (then `configure` may change the group, e.g. its
/// throughput), `per_iter` operations of the pair per criterion iteration.
/// A case that cannot start (a missing peer) is skipped with a note.
pub fn bench_pair(
    c: &mut Criterion,
    group: &str,
    id: &str,
    measure: Duration,
    per_iter: u64,
    start: impl FnOnce() -> BenchResult<Box<dyn Pair>>,
    configure: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>),
) {
    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(measure);
    configure(&mut g);
    let mut pair = match start() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping {id}: {e}");
            return;
        }
    };
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter_custom(|iters| {
            pair.run(iters * per_iter, None)
                .unwrap_or_else(|e| panic!("{id}: the bench pair failed: {e}"))
        })
    });
    g.finish();
}

/// The raw atomic limit, measured right before case `k` (the host moves
/// vCPUs between placements, so each case gets an adjacent limit).
#[allow(dead_code)] // not every bench target measures an adjacent limit
pub fn limit_before(c: &mut Criterion, env: &mut BenchEnv, k: usize, measure: Duration) {
    let id = format!("{}/before-{k}", CaseKind::Limit.name());
    bench_pair(
        c,
        "limit",
        &id,
        measure,
        1,
        || cases::start(CaseKind::Limit, env),
        |_| {},
    );
}
