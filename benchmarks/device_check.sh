#!/usr/bin/env bash
# GPU device check (issue 6): the same code on CUDA, then the benchmarks with reduced sizes; ~5-8 minutes on one
# GPU with a few CPU cores. Every step has its own time limit; the script goes on after a failed step and exits
# non-zero at the end if any failed. Output: stdout (and $OUT/device_check.log when $OUT is set).
# Usage: bash benchmarks/device_check.sh [--sessions N] [--quick]
#   --sessions N   sessions of the objective benchmark's synthetic heads and of the whole head prediction
#                  (default 20000; the real scale is 66423)
#   --quick        smaller sizes everywhere (about 3 minutes)
set -u
cd "$(dirname "$0")/.."
SESSIONS=20000
NB=500
OURS=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --sessions) SESSIONS="$2"; shift 2 ;;
    --quick) SESSIONS=4000; NB=200; OURS=500; shift ;;
    *) echo "unknown flag $1"; exit 2 ;;
  esac
done
LOG=${OUT:+$OUT/device_check.log}
LOG=${LOG:-/dev/null}
FAILED=0
step() {  # step <seconds> <title> <command...>
  local limit="$1" title="$2"; shift 2
  echo "=== $title (limit ${limit}s)" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | grep -v "Warning\|warn(" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $title: exit $rc, $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || FAILED=1
}
step 30 "environment" python -c "import torch, os; print(torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'cpus', os.cpu_count())"
step 120 "GPU self-check (CUDA = CPU results)" python benchmarks/gpu_selfcheck.py
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible to torch: the benchmarks need one (run this script on a GPU machine)" | tee -a "$LOG"
  exit 2
fi
step 150 "head prediction benchmark (cuda, auto precision, whole prediction of $SESSIONS sessions)" \
  python benchmarks/bench_heads.py --device cuda --precision auto --nb-sessions 3 --our-sessions "$OURS" \
  --full --full-sessions "$SESSIONS"
step 240 "objective benchmark (cuda ranker, $SESSIONS sessions)" \
  python benchmarks/bench_objective.py --device cuda --sessions "$SESSIONS" --nb-sessions "$NB" \
  --workers "$(nproc)" --reps 5
exit $FAILED
