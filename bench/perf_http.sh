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
# CPU split per thread, per DSO, and the top symbols (self time). Over the
# same window it counts, per thread, context switches (voluntary = the thread
# slept and was woken: a wake-up) and system calls (perf stat
# raw_syscalls:sys_enter), and prints them per request (per connection with
# --churn), the requests in the window estimated from wrk's rate. Extra
# pc-http flags: PC_HTTP_ARGS (e.g. "--rules FILE" for the 1M-prefix list).
# Needs perf (linux-perf); kernel symbols need
# kernel.perf_event_paranoid <= 1 or root. Exit 0 whatever it finds.
set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
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
# context switches per thread: /proc/PID/task/TID/status, before and after
ctxsw() {
    for t in /proc/"$PC_PID"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
            "$(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2}
                     END {print v+0, n+0}' "$t/status" 2>/dev/null)"
    done
}
ctxsw >"$TMP/cs0"
perf stat -e raw_syscalls:sys_enter --per-thread -p "$PC_PID" -x, -o "$TMP/sys.csv" \
    -- sleep "$SECS" >/dev/null 2>&1 &
STAT_PID=$!
perf record -F 999 -g -p "$PC_PID" -o "$TMP/perf.data" -- sleep "$SECS" >/dev/null 2>&1
wait "$STAT_PID" 2>/dev/null
ctxsw >"$TMP/cs1"
wait "$WRK_PID" 2>/dev/null
WRK_PID=
RATE=$(awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out")
echo "load: wrk -t2 -c$CONNS $([ "$CHURN" = 1 ] && echo "-H 'Connection: close'")" \
    "-> ${RATE:-?} req/s"
UNIT=request
[ "$CHURN" = 1 ] && UNIT=connection
echo "-- per $UNIT, by thread (window ${SECS}s, ~$(awk -v r="${RATE:-0}" -v s="$SECS" \
    'BEGIN {printf "%.0f", r * s}') ${UNIT}s from wrk's rate)"
awk -v r="${RATE:-0}" -v s="$SECS" -v f0="$TMP/cs0" -v fs="$TMP/sys.csv" '
    BEGIN {
        while ((getline l < f0) > 0) { split(l, a, " "); v0[a[1]] = a[3]; n0[a[1]] = a[4] }
        # perf stat --per-thread -x,: "comm-TID,count,..."
        while ((getline l < fs) > 0) {
            split(l, a, ","); k = a[1]; sub(/.*-/, "", k); if (k ~ /^[0-9]+$/) sc[k] = a[2]
        }
        units = r * s; if (units <= 0) units = 1
        printf "%-8s %-12s %12s %12s %12s\n", "tid", "thread", "wakeups", "preempted", "syscalls"
    }
    {
        tid = $1; dv = $3 - v0[tid]; dn = $4 - n0[tid]
        printf "%-8s %-12s %12.3f %12.3f %12.3f\n", tid, $2, dv / units, dn / units, sc[tid] / units
    }' "$TMP/cs1"
echo "-- CPU by thread"
perf report -i "$TMP/perf.data" --stdio --no-children --sort comm,pid -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
echo "-- CPU by DSO"
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
echo "-- top symbols (self)"
perf report -i "$TMP/perf.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -30
echo "-- top user-space symbols (self)"
perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null |
    grep -E '^ +[0-9]' | grep -v kernel | head -15
exit 0
