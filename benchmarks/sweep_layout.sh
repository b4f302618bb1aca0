#!/usr/bin/env bash
# How a sweep should share this machine's cores: one run on all of them (kvt compare -j 1)
# against one run per core with one thread each (-j N, N = the cores), as kvt compare
# lays its children out. Each run is the seed recipe (MiniVGGNet, batch 32) for two epochs
# on LIMIT CIFAR-10 training images; the second epoch's training time is the measure
# (the first holds graph tracing). Prints images/s per layout and activation.
#
#   benchmarks/sweep_layout.sh CIFAR10_DIR OUT_DIR
#
# Environment (defaults in brackets): PYTHON [python3], LIMIT [6400], ACTIVATIONS
# [crelu relu], ARGS []: flags added to every run (e.g. "--backend jax").
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: benchmarks/sweep_layout.sh CIFAR10_DIR OUT_DIR" >&2
    exit 2
fi
data=$1 out=$2
py=${PYTHON:-python3} limit=${LIMIT:-6400} cores=$(nproc)
read -r -a args <<< "${ARGS:-}"
mkdir -p "$out"
echo "== sweep_layout.sh $(date -u +%FT%TZ): seed recipe, 2 epochs on $limit images ${args[*]}"
grep -m1 "model name" /proc/cpuinfo || true
echo "cores: $cores"
"$py" -c "from kvt.data import load_dataset; load_dataset('cifar10', '$data')"

train() {  # threads activation seed dir
    OMP_NUM_THREADS=$1 TF_NUM_INTRAOP_THREADS=$1 TF_NUM_INTEROP_THREADS=1 \
        "$py" -m kvt train --activation "$2" --seed "$3" --epochs 2 --train-limit "$limit" \
        --test-limit 500 --data-dir "$data" "${args[@]}" --quiet --out "$4" --force \
        > "$4.log" 2>&1
}
seconds() {  # dir: the last epoch's training seconds
    tail -1 "$1/history.csv" | awk -F, '{print $7}'
}

printf '%-10s %-30s %10s  %s\n' activation layout "img/s" "epoch s (each run)"
for act in ${ACTIVATIONS:-crelu relu}; do
    train "$cores" "$act" 0 "$out/$act-all-cores"
    s=$(seconds "$out/$act-all-cores")
    printf '%-10s %-30s %10.1f  %s\n' "$act" "1 run x $cores threads (-j 1)" \
        "$(awk -v n="$limit" -v s="$s" 'BEGIN{print n / s}')" "$(awk -v s="$s" 'BEGIN{printf "%.1f", s}')"
    pids=()
    for ((i = 0; i < cores; i++)); do
        train 1 "$act" "$i" "$out/$act-one-thread-$i" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    slowest=0 all=""
    for ((i = 0; i < cores; i++)); do
        s=$(seconds "$out/$act-one-thread-$i")
        all+="${all:+ }$(awk -v s="$s" 'BEGIN{printf "%.1f", s}')"
        slowest=$(awk -v a="$s" -v b="$slowest" 'BEGIN{print (a > b) ? a : b}')
    done
    printf '%-10s %-30s %10.1f  %s\n' "$act" "$cores runs x 1 thread (-j $cores)" \
        "$(awk -v c="$cores" -v n="$limit" -v s="$slowest" 'BEGIN{print c * n / s}')" "$all"
done
