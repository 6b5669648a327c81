#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 20). Installs cargo-fuzz if missing.
# Usage: fuzz/smoke.sh [SECONDS]
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]: SECONDS must be a whole number, got \`$seconds\`" >&2
    exit 2
fi

cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for target in $(cargo fuzz list); do
    echo "== fuzzing ${target} for ${seconds}s"
    # New inputs go to corpus/ (not committed); seeds/ holds committed starting inputs.
    mkdir -p "corpus/$target" "seeds/$target" logs
    log="logs/$target.log"
    # libFuzzer is chatty: keep its output in a log, print its summary, and the log on failure.
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target ${target} failed; full output in fuzz/${log}" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
done
