#!/bin/sh
# Runs libFuzzer targets for a bounded time each (`make fuzz`; docs/fuzzing.md).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS TARGET...
#
# Each target fuzz_<name> (built in BUILD_DIR/fuzz) runs alone for SECONDS
# with a working corpus in BUILD_DIR/corpus/<name>, seeded from
# tests/fuzz/corpus/<name> and kept between runs.  Whatever libFuzzer leaves
# as an artifact (crash-*, leak-*, timeout-*, oom-*) is copied into
# tests/fuzz/regress/<name>/, where the replay test fuzz_<name>_replay will
# run it from now on, and the run fails once every target has had its turn.
# Extra libFuzzer flags: FUZZ_FLAGS in the environment.
set -u

build=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
flags=${FUZZ_FLAGS:--rss_limit_mb=4096 -timeout=10 -print_final_stats=1}
failed=""

for name in "$@"; do
    bin=$build/fuzz/fuzz_$name
    corpus=$build/corpus/$name
    artifacts=$build/artifacts/$name
    log=$build/fuzz_$name.log
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts"/*
    cp -n "$here/corpus/$name"/* "$corpus"/ 2>/dev/null
    echo "fuzz_$name: ${seconds}s (log: $log)"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$seconds" -artifact_prefix="$artifacts/" $flags \
        "$corpus" >"$log" 2>&1
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec)' "$log" |
        sed 's/^/  /'
    found=$(ls "$artifacts")
    if [ -n "$found" ]; then
        mkdir -p "$here/regress/$name"
        for f in $found; do
            cp "$artifacts/$f" "$here/regress/$name/$f"
            echo "  FOUND: $f -> tests/fuzz/regress/$name/$f"
        done
        grep -m1 -E 'invariant broken|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
            "$log" | sed 's/^/  /'
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: inputs that break vtio were found by:$failed."
    echo "fuzz: they are in tests/fuzz/regress/ now; fix the bug (the replay tests fail until then)."
    exit 1
fi
echo "fuzz: nothing found in ${seconds}s per target."
