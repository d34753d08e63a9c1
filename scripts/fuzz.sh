#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz, libFuzzer, nightly toolchain) for SECONDS each
# (default 60: the short form `make test` runs; `make fuzz FUZZ_SECONDS=3600` for a long
# one). The corpus grows in ~/.cache/switchyard/fuzz-corpus, seeded from fuzz/seeds. A
# crash stops the run with the input saved in fuzz/artifacts/<target>/: copy it into
# fuzz/seeds/<target>/ (every run replays the seeds) and fix the code.
# No sanitizer: the workspace forbids unsafe code, so the search is for panics, aborts,
# hangs and runaway memory, and an uninstrumented build is several times faster.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzzing needs the nightly toolchain; installing it..." >&2
  rustup toolchain install nightly --profile minimal >&2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..." >&2
  CARGO_TARGET_DIR="$HOME/.cache/switchyard/cargo-fuzz-build" cargo install cargo-fuzz --locked >&2
fi
# Its own target dir: nightly builds with other flags than the workspace's.
export CARGO_TARGET_DIR="$HOME/.cache/switchyard/fuzz-target"
corpus_root="$HOME/.cache/switchyard/fuzz-corpus"
for target in event ingest_request admin_request; do
  mkdir -p "$corpus_root/$target"
  echo "fuzzing $target for ${seconds}s..." >&2
  log="$corpus_root/$target.log"
  if ! cargo +nightly fuzz run --release --sanitizer none "$target" "$corpus_root/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/$target /" >&2
done
