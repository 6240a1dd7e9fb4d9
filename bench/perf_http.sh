#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Profile pc-http under wrk with perf, loopback only, bounded in time.
#
#   bench/perf_http.sh BUILD_DIR [--churn] [--seconds S] [--threads N] [--conns N]
#
# Starts BUILD_DIR/bin/pc-http --threads N (default 2) on a free 127.0.0.1
# port, runs wrk -t2 -cCONNS (default 100) for S+2 seconds (default S=5; with
# --churn every request carries "Connection: close"), records S seconds of
# the server with `perf record -g` in the middle of the load, and prints the
# CPU split per thread, per DSO, and the top symbols (self time). Extra
# pc-http flags: PC_HTTP_ARGS. Needs perf (linux-perf); kernel symbols need
# kernel.perf_event_paranoid <= 1 or root. Exit 0 whatever it finds.
set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
shift
SECS=5
THREADS=2
CONNS=100
CHURN=0
while [ $# -gt 0 ]; do
    case $1 in
    --churn) CHURN=1 ;;
    --seconds) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
command -v perf >/dev/null || { echo "perf not installed (apt-get install linux-perf)" >&2; exit 2; }
command -v wrk >/dev/null || bench_need_cmd wrk wrk || { echo "wrk not available" >&2; exit 2; }

TMP=$(mktemp -d /tmp/pc-perf.XXXXXX)
PC_PID=
WRK_PID=
trap 'bench_stop "$WRK_PID" TERM; bench_stop "$PC_PID" TERM; rm -rf "$TMP"' EXIT
PORT=$(bench_free_port)
# shellcheck disable=SC2086
"$BUILD/bin/pc-http" --listen "127.0.0.1:$PORT" --threads "$THREADS" ${PC_HTTP_ARGS:-} \
    >"$TMP/pc.out" 2>"$TMP/pc.err" &
PC_PID=$!
bench_wait_port "$PORT" || { echo "pc-http did not start: $(cat "$TMP/pc.err")" >&2; exit 1; }
hdr=()
[ "$CHURN" = 1 ] && hdr=(-H "Connection: close")
wrk -t2 -c"$CONNS" -d"$((SECS + 2))s" "${hdr[@]}" "http://127.0.0.1:$PORT/" >"$TMP/wrk.out" 2>&1 &
WRK_PID=$!
sleep 1
perf record -F 999 -g -p "$PC_PID" -o "$TMP/perf.data" -- sleep "$SECS" >/dev/null 2>&1
wait "$WRK_PID" 2>/dev/null
WRK_PID=
echo "load: wrk -t2 -c$CONNS $([ "$CHURN" = 1 ] && echo "-H 'Connection: close'")" \
    "-> $(awk '/Requests\/sec/ {print $2 " req/s"}' "$TMP/wrk.out")"
echo "-- CPU by thread"
perf report -i "$TMP/perf.data" --stdio --no-children --sort comm,pid 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
echo "-- CPU by DSO"
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
echo "-- top symbols (self)"
perf report -i "$TMP/perf.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -30
echo "-- top user-space symbols (self)"
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null |
    grep -E '^ +[0-9]' | grep -v kernel | head -15
exit 0
