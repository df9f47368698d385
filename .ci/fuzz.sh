#!/usr/bin/env bash
# Fuzz smoke run (fuzz/README.md): builds every cargo-fuzz target in fuzz/ and runs each for
# a bounded time, starting from the committed seeds in fuzz/corpus/<target>/. Exits non-zero
# when any target crashes, hangs (an input over 10 s) or exceeds the memory limit; the
# offending input is left in fuzz/artifacts/<target>/ and the command to replay it printed.
#
# Works on a stable toolchain: cargo-fuzz passes a few unstable compiler flags, which stable
# accepts with RUSTC_BOOTSTRAP=1. libFuzzer itself is C++, so a C++ compiler must be present.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated subset of targets (default: all of `cargo fuzz list`)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1

# The dev profile (debug assertions, overflow checks, no optimisation): it builds in about
# 3 minutes where the release profile took 11 on CI's two cores, and still runs ~3,000
# inputs a second per target (~60,000 in a 20 s smoke run). No sanitizer: safe Rust needs
# none to report panics, overflows and out-of-bounds indexing, and the build is shorter.
flags=(--dev --sanitizer none)
start=$(date +%s)
echo "== cargo fuzz build (${flags[*]})"
cargo fuzz build "${flags[@]}"
echo "   built in $(($(date +%s) - start)) s"
# The binaries are run directly, as `cargo fuzz run` would (which would also build again).
bin="target/$(rustc -vV | sed -n 's/^host: //p')/debug"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
failed=()
summary=()
for target in "${targets[@]}"; do
  dict=()
  case "$target" in
    node_devices | pod_allocations) dict=(-dict=dicts/annotations.dict) ;;
    request) dict=(-dict=dicts/request.dict) ;;
  esac
  # New inputs go to the first (scratch) directory; the committed seeds stay as they are.
  scratch="target/fuzz-corpus/$target"
  mkdir -p "$scratch" "corpus/$target"
  log="target/fuzz-$target.log"
  echo "== $target (${seconds} s)"
  mkdir -p "artifacts/$target"
  if "$bin/$target" -artifact_prefix="artifacts/$target/" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 "$scratch" "corpus/$target" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -20 || true
    tail -n 40 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  summary+=("$(printf '%-16s %-7s %10s runs %8s exec/s' "$target" "$status" "${runs:-?}" "${rate:-?}")")
done

echo "== fuzz summary (total $(($(date +%s) - start)) s)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found a failure in: ${failed[*]}"
  for target in "${failed[@]}"; do
    for input in artifacts/"$target"/*; do
      [ -e "$input" ] || continue
      echo "   replay: (cd fuzz && $bin/$target $input)"
    done
  done
  exit 1
fi
