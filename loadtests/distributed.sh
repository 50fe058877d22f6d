#!/usr/bin/env bash
# Locust's distributed mode: one master aggregates, N workers generate the load.
#
#   loadtests/distributed.sh                              # local demo: 2 workers on this machine, 20 s
#   WORKERS=4 USERS=256 RUN_TIME=60s HOST=http://10.0.0.5:3000 loadtests/distributed.sh
#
# Across machines, start the master on one host and workers on the others:
#   master:  locust -f loadtests/locustfile.py --config loadtests/locust.conf --master --expect-workers 4 JsonOneImageUser
#   worker:  locust -f loadtests/locustfile.py --worker --master-host <master-ip> JsonOneImageUser
# Each worker process uses one core; add workers until no worker reports "CPU usage above 90%".
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-2}
USERS=${USERS:-64}
RUN_TIME=${RUN_TIME:-20s}
HOST=${HOST:-http://127.0.0.1:3000}
USER_CLASS=${USER_CLASS:-JsonOneImageUser}
OUT=${OUT:-results/distributed}
LOCUST=${LOCUST:-.venv/bin/locust}
mkdir -p "$OUT"
pids=()
for _ in $(seq "$WORKERS"); do
    "$LOCUST" -f loadtests/locustfile.py --worker --master-host 127.0.0.1 "$USER_CLASS" >>"$OUT/workers.log" 2>&1 &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$LOCUST" -f loadtests/locustfile.py --config loadtests/locust.conf --master --expect-workers "$WORKERS" \
    --host "$HOST" --users "$USERS" --spawn-rate "$USERS" --run-time "$RUN_TIME" \
    --csv "$OUT/locust" --html "$OUT/report.html" "$USER_CLASS"
