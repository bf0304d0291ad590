#!/usr/bin/env bash
# Runs every fuzz target of shmwire for a fixed time each.
#
#   fuzz/run.sh [SECONDS]        # default 60 seconds per target
#
# On a fresh machine it installs what it needs first: a minimal nightly
# toolchain (cargo-fuzz builds with sanitizers) and cargo-fuzz. Builds are
# serialised with other cargo runs on this machine through
# /tmp/shmwire-build.lock and run under `nice`; fuzzing itself holds no lock. A crash stops the script
# with libFuzzer's report; the reproducer is under fuzz/artifacts/<target>/
# (re-run it with `cargo +nightly fuzz run <target> <file>`). The corpus
# grows under fuzz/corpus/<target>/ between runs.
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")"

if ! command -v rustup >/dev/null; then
    echo "rustup is required: https://rustup.rs" >&2
    exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

lock() { flock /tmp/shmwire-build.lock nice "$@"; }

lock cargo +nightly fuzz build
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
for target in $(cargo +nightly fuzz list); do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target" "artifacts/$target"
    # The built binary is run directly, so the build lock is not held
    # while fuzzing. Bounded: fixed total time and a per-input timeout;
    # no leak check (the transport targets keep one listener per process).
    "target/$triple/release/$target" "corpus/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" \
        -timeout=20 -detect_leaks=0 -print_final_stats=1
    # The transport targets keep a session under $TMPDIR/shmwire-fuzz-<pid>
    # for their process's life; remove the one this run left.
    rm -rf "${TMPDIR:-/tmp}"/shmwire-fuzz-*
done
echo "== every target ran ${seconds}s without a crash"
