#!/usr/bin/env bash
# The fast recipe on a CPU (`--recipe fast-cpu`): SEEDS runs, one at a time, each a whole
# `kvt train` process timed from start to exit, then the time-to-accuracy table.
#
#   benchmarks/fast_cpu.sh CIFAR10_DIR OUT_DIR
#
# Environment (defaults in brackets): PYTHON [python3], SEEDS [5]: seeds 0..SEEDS-1,
# ARGS []: flags added to every run (e.g. "--backend torch").
# The dataset is decoded into kvt's cache first, so that no run's wall time holds the
# decoding (a run still reads the cached arrays: about 2 s). Each run directory holds
# wall_s, the process's wall time; OUT_DIR/fast-cpu.txt the table.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: benchmarks/fast_cpu.sh CIFAR10_DIR OUT_DIR" >&2
    exit 2
fi
data=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3} seeds=${SEEDS:-5}
read -r -a args <<< "${ARGS:-}"
mkdir -p "$out"
echo "== fast_cpu.sh $(date -u +%FT%TZ): --recipe fast-cpu ${args[*]}, seeds 0..$((seeds - 1))"
grep -m1 "model name" /proc/cpuinfo || true
echo "cores: $(nproc)"
"$py" -c "from kvt.data import load_dataset; load_dataset('cifar10', '$data')"
for ((s = 0; s < seeds; s++)); do
    dir=$out/seed-$s
    t0=$EPOCHREALTIME
    "$py" -m kvt train --recipe fast-cpu --seed "$s" --data-dir "$data" "${args[@]}" \
        --out "$dir" --force > "$dir.log" 2>&1 \
        || { echo "fast_cpu.sh: kvt train failed, see $dir.log" >&2; tail -5 "$dir.log" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", b - a }' > "$dir/wall_s"
    echo "seed $s: $(tail -1 "$dir.log"), wall $(cat "$dir/wall_s") s"
done
"$py" "$here/time_to_accuracy.py" "$out"/seed-*/ | tee "$out/fast-cpu.txt"
