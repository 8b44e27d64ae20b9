#!/usr/bin/env bash
# `make fuzz`: each decoder under libFuzzer (cargo fuzz, AddressSanitizer) for $1 seconds, seeded with the sample
# payloads, on a 2 MiB stack (a tokio worker's), so recursion that would overflow a worker overflows here first.
# Exits non-zero on the first crash; the input that crashed is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=(telemetry logs otel events netflow sweep ingest)
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  cp tests/fixtures/samples/*.json "fuzz/corpus/$t/" 2>/dev/null || true
done
ulimit -s 2048
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s"
  # cargo fuzz needs nightly flags (-Zsanitizer); the machine's one toolchain is stable.
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- \
     -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=2048 -print_final_stats=1)
done
echo "fuzz: every decoder and the ingest request parsing ran ${secs}s without a crash"
