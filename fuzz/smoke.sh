#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 20). Installs cargo-fuzz if missing.
# Fails if the target list is empty, if it differs from the [[bin]] targets in Cargo.toml, or if
# any target fails or reports no executions.
# Usage: fuzz/smoke.sh [SECONDS]
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]: SECONDS must be a whole number of at least 1, got \`$seconds\`" >&2
    exit 2
fi

cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# `cargo fuzz list` failing or printing nothing would otherwise run zero targets and pass.
listed="$(cargo fuzz list)"
declared="$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx 'custody-fuzz' | sort)"
if [ -z "$listed" ]; then
    echo "cargo fuzz list printed no targets" >&2
    exit 1
fi
if [ "$(printf '%s\n' "$listed" | sort)" != "$declared" ]; then
    printf 'cargo fuzz list does not match Cargo.toml:\n--- listed\n%s\n--- declared\n%s\n' \
        "$listed" "$declared" >&2
    exit 1
fi

ran=0
for target in $listed; do
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
    # libFuzzer's last line: `Done N runs in S second(s)`. No such line, or N = 0, means the
    # target never ran an input.
    runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)"
    if [ -z "$runs" ] || [ "$runs" -eq 0 ]; then
        tail -n 20 "$log"
        echo "fuzz target ${target} reported no executions; full output in fuzz/${log}" >&2
        exit 1
    fi
    echo "${target}: ${runs} executions"
    ran=$((ran + 1))
done
echo "fuzz smoke: ${ran} targets ran"
