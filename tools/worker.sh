#!/usr/bin/env bash
# A campaign worker: trains one run at a time, always the first free run of the first ablation
# in QUEUE_DIR/ablations.txt that has one, until every ablation there is done. Start one per
# core (or GPU); workers share the queue, so no core idles while another ablation has work, and
# an ablation's last runs do not hold a core back (as `--jobs N` within one ablation does).
#
#   tools/worker.sh QUEUE_DIR [NAME]      # log lines "=== worker NAME: ..." on stdout
#
# ablations.txt: one `repro ablate NAME ...` command prefix per line (everything but --plan and
# --only, e.g. `cd ../snapshot && PYTHONPATH=. python -m repro ablate lrn --scale cifar
# --results ../main/results --reports ../main/reports`), first line first; a line may end in
# " @ REGEX" to take only the runs whose selector (ARM/SEED-HASH) matches; a line that starts with
# "#" is skipped (a finished line kept as the record of what ran, without the few seconds its
# `--plan` costs at every pick). Edit it at any time.
#
# How a run is picked, under QUEUE_DIR/picker.lock: each line's `--plan` lists its pending runs
# (a run another process is training is not pending); the first one not in QUEUE_DIR/claims.txt
# is claimed there and trained with `--only`, and its claim removed when it ends. A run whose
# seed and config hash are claimed under another ablation is left until that one is done, then
# copied (`repro ablate` copies identical finished runs), never trained twice. A job that exits
# non-zero is listed in QUEUE_DIR/failed.txt and not picked again (delete the line to retry).
# After a crash, delete claims.txt before starting the workers again; runs resume from their
# checkpoints.
#
#   tools/worker.sh --peek QUEUE_DIR      # what the next pick would be, claiming nothing
#
# Before a session ends: `echo 20:05 > QUEUE_DIR/stop-at` (any time `date -d` reads) and each
# worker starts no run after that time and exits; runs in flight finish. Read before every pick,
# so it can be written (or removed) while the workers run; an unreadable time stops them too.
set -u

pick() {  # print the next claimed job, or WAIT (runs still to come), or nothing (all done)
  local dir=$1 claim=${2:-claim} more=0 entry line filter plan sel
  touch "$dir/claims.txt" "$dir/failed.txt"
  while read -r entry; do
    case $entry in '' | '#'*) continue ;; esac
    line=${entry%% @ *}; filter=.
    [ "$line" != "$entry" ] && filter=${entry#* @ }
    plan=$(bash -c "$line --plan" 2>/dev/null)
    for sel in $(grep -v '^#' <<<"$plan" | sed -n 's/.* --only //p' | grep -E -- "$filter"); do
      if grep -qxF -- "$line --only $sel" "$dir/failed.txt"; then
        continue  # failed once: left for a person to look at
      fi
      if ! sed 's|.*/||' "$dir/claims.txt" | grep -qxF -- "${sel##*/}"; then
        [ "$claim" = claim ] && echo "$line --only $sel" >> "$dir/claims.txt"
        echo "$line --only $sel"
        return
      fi
      more=1
    done
    grep -q "appear after the selection runs" <<<"$plan" && more=1  # main seeds wait for a grid
    grep -Eq "[1-9][0-9]* running elsewhere" <<<"$plan" && more=1
  done < "$dir/ablations.txt"
  [ "$more" = 1 ] && echo WAIT
}

if [ "${1:-}" = --pick ]; then pick "$2"; exit 0; fi
if [ "${1:-}" = --peek ]; then pick "$2" peek; exit 0; fi
[ $# -ge 1 ] && [ -f "$1/ablations.txt" ] || { echo "usage: tools/worker.sh QUEUE_DIR [NAME] (QUEUE_DIR/ablations.txt: one repro ablate prefix per line)" >&2; exit 2; }
dir=$(cd "$1" && pwd); name=${2:-$$}; self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
past_stop_time() {  # true (and says why) once QUEUE_DIR/stop-at's time has come
  [ -s "$dir/stop-at" ] || return 1
  local when; when=$(date -d "$(cat "$dir/stop-at")" +%s 2>/dev/null) \
    || { echo "=== worker $name: cannot read the time in $dir/stop-at: stopping $(date -Is)"; return 0; }
  [ "$(date +%s)" -ge "$when" ] || return 1
  echo "=== worker $name: stop-at $(cat "$dir/stop-at") reached: no new run $(date -Is)"
}

while true; do
  past_stop_time && break
  job=$(flock "$dir/picker.lock" bash "$self" --pick "$dir")
  if [ -z "$job" ]; then echo "=== worker $name: all done $(date -Is)"; break; fi
  if [ "$job" = WAIT ]; then sleep "${WORKER_WAIT_S:-60}"; continue; fi
  echo "=== worker $name: $job $(date -Is)"
  bash -c "$job --quiet"
  rc=$?
  echo "=== worker $name: rc=$rc $(date -Is)"
  [ "$rc" = 0 ] || flock "$dir/picker.lock" bash -c 'echo "$1" >> "$2"' _ "$job" "$dir/failed.txt"
  flock "$dir/picker.lock" python3 - "$dir/claims.txt" "$job" <<'EOF'
import pathlib, sys
p, job = pathlib.Path(sys.argv[1]), sys.argv[2]
p.write_text("".join(x for x in p.read_text().splitlines(keepends=True) if x.rstrip("\n") != job))
EOF
done
