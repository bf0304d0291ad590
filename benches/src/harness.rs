//! Measurement plumbing shared by `shmwire bench ring` and
//! `benches/benches/ring.rs`: CPU pinning, the timed loop, histogram
//! summaries and machine facts.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// Result type of the bench plumbing: errors are reported, not matched.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which CPUs the two sides run on.
#[derive(Clone, Debug)]
pub struct Placement {
    /// CPU of the measuring side (this process / main thread), if pinned.
    pub parent_cpu: Option<usize>,
    /// CPU of the echoing side (child process / peer thread), if pinned.
    pub child_cpu: Option<usize>,
    /// Why pinning was not done, if it was not.
    pub note: Option<String>,
}

impl Placement {
    /// Picks the first two CPUs this process may run on. With fewer than
    /// two, nothing is pinned and `note` says why.
    pub fn choose() -> Self {
        match sched_getaffinity(None) {
            Ok(set) => {
                let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
                if cpus.len() >= 2 {
                    Self {
                        parent_cpu: Some(cpus[0]),
                        child_cpu: Some(cpus[1]),
                        note: None,
                    }
                } else {
                    Self {
                        parent_cpu: None,
                        child_cpu: None,
                        note: Some(format!(
                            "only {} CPU(s) available: not pinned, both sides share it",
                            cpus.len()
                        )),
                    }
                }
            }
            Err(e) => Self {
                parent_cpu: None,
                child_cpu: None,
                note: Some(format!("sched_getaffinity failed ({e}): not pinned")),
            },
        }
    }

    /// Pins the calling (measuring) thread to `parent_cpu`. If the kernel
    /// refuses (a restricted container), falls back to an unpinned run and
    /// says why in `note`.
    pub fn pin_parent(&mut self) {
        if let Some(cpu) = self.parent_cpu {
            if let Err(e) = pin_current_thread(cpu) {
                self.parent_cpu = None;
                self.child_cpu = None;
                self.note = Some(format!("pinning refused ({e}): not pinned"));
            }
        }
    }

    /// Whether both sides are pinned.
    pub fn pinned(&self) -> bool {
        self.parent_cpu.is_some() && self.child_cpu.is_some()
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> BenchResult<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(|e| format!("sched_setaffinity({cpu}): {e}"))?;
    Ok(())
}

/// The calling thread's current affinity, to restore after a pinned run.
pub fn current_affinity() -> Option<CpuSet> {
    sched_getaffinity(None).ok()
}

/// Restores an affinity saved by [`current_affinity`].
pub fn restore_affinity(set: &Option<CpuSet>) {
    if let Some(set) = set {
        let _ = sched_setaffinity(None, set);
    }
}

/// A fresh latency histogram: 1 ns … 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs `op` `n` times. With a histogram, reads the clock once per
/// operation and records the time since the previous read (so each sample
/// is one operation plus one clock read); without, reads it only at the
/// start and end. Returns the total elapsed time.
#[inline]
pub fn timed_loop<F>(n: u64, hist: Option<&mut Histogram<u64>>, mut op: F) -> BenchResult<Duration>
where
    F: FnMut(u64) -> BenchResult<()>,
{
    let start = Instant::now();
    match hist {
        Some(h) => {
            let mut prev = start;
            for i in 0..n {
                op(i)?;
                let now = Instant::now();
                h.saturating_record((now - prev).as_nanos() as u64);
                prev = now;
            }
        }
        None => {
            for i in 0..n {
                op(i)?;
            }
        }
    }
    Ok(start.elapsed())
}

/// Median cost of one `Instant::now()` read, in ns (measured, not assumed).
pub fn clock_overhead_ns() -> f64 {
    const N: u32 = 100_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut last = start;
        for _ in 0..N {
            last = std::hint::black_box(Instant::now());
        }
        let per = (last - start).as_nanos() as f64 / f64::from(N);
        best = best.min(per);
    }
    best
}

/// Percentile summary of one measurement.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Operations measured.
    pub iterations: u64,
    /// Median, ns.
    pub median_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest sample, ns.
    pub max_ns: u64,
    /// Operations per second over the whole measurement.
    pub ops_per_s: f64,
}

impl Summary {
    /// Summarises a histogram and the total elapsed time of `iterations`
    /// operations.
    pub fn new(hist: &Histogram<u64>, iterations: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        Self {
            iterations,
            median_ns: hist.value_at_quantile(0.5),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns: hist.max(),
            ops_per_s: if secs > 0.0 {
                iterations as f64 / secs
            } else {
                0.0
            },
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Facts about the machine a run happened on.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average before the run.
    pub load_avg_1m: Option<f64>,
    /// Cost of one clock read, ns.
    pub clock_overhead_ns: f64,
}

impl MachineInfo {
    /// Collects the facts (and measures the clock overhead).
    pub fn collect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
        let load_avg_1m = read_trimmed("/proc/loadavg")
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        Self {
            cpu_model,
            cores,
            kernel,
            load_avg_1m,
            clock_overhead_ns: clock_overhead_ns(),
        }
    }
}

/// Placement class of a limit measurement. On the project's 2-vCPU KVM
/// machines the host moves the vCPUs between a near placement (limit round
/// trip ~110 ns) and a far one (~510 ns) for minutes at a time.
pub fn placement_class(limit_median_ns: u64) -> &'static str {
    if limit_median_ns < 250 {
        "near"
    } else {
        "far"
    }
}
