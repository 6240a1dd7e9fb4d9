#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pc-http with batch scheduling (as shipped) against pc-http --sched default,
# in the same run, alternating: what SCHED_BATCH changes in CPU, wake-ups,
# rate and latency, from one client to many.
#
#   bench/sched_pair.sh BUILD_DIR [--rounds N] [--duration S] [--threads N]
#                       [--conns "1 16 100"] [--watch FILE]
#
# For each client count and each round (default 3; each load --duration
# seconds, default 3), wrk -t(1 or 2) -cN drives both servers, the order
# alternating from round to round, first with "Connection: close" (churn)
# then keep-alive (ka). Per run: requests/s, server CPU per request
# (utime+stime of the process over the load), wake-ups per request
# (voluntary context switches of its threads) and wrk's latency p50/p99.
# The summary has the median over rounds per server and the median of the
# per-round ratios batch / default.
#
# --watch FILE appends, per load, what to look at when a round is slow: the
# kernel's TCP counters that moved (nstat: retransmissions, timeouts,
# listen-queue overflows and drops, resets) and each server thread's run
# time, run-queue wait and involuntary switches (/proc/PID/task/*/schedstat
# and sched), with wrk's latency lines.
#
# SESSION=own (default) starts each server in a session of its own
# (setsid), as a service manager would: with the kernel's autogroup
# scheduling it then competes with wrk as a group. SESSION=shared leaves
# them in the script's session, among wrk's threads.
#
# It measures and never judges: the exit status is 0 whatever the figures.
set -u

usage() {
    sed -n '3,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
if [ $# -lt 1 ] || [ ! -d "$1" ]; then usage; fi
BUILD=$(cd "$1" && pwd)
shift
ROUNDS=3
SECS=3
THREADS=2
CONNS_LIST="1 16 100"
WATCH=
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --conns) CONNS_LIST=$2; shift ;;
    --watch) WATCH=$2; shift ;;
    *) usage ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30
[ "$SECS" -ge 1 ] 2>/dev/null || SECS=3
[ "$ROUNDS" -ge 1 ] 2>/dev/null || ROUNDS=3

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
PCHTTP=$BUILD/bin/pc-http
[ -x "$PCHTTP" ] || { echo "no $PCHTTP (build the pc-http target)" >&2; exit 2; }
command -v wrk >/dev/null || bench_need_cmd wrk wrk
bench_session_launch own

TMP=$(mktemp -d /tmp/pc-sched.XXXXXX)
declare -A PID PORT
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local s
    for s in "${!PID[@]}"; do bench_stop "${PID[$s]}" TERM; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "kernel $(uname -r); servers' session: $SESSION" \
    "(kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a))"
echo "pc-http: $PCHTTP --threads $THREADS; batch: as shipped; default: --sched default;" \
    "rounds $ROUNDS x ${SECS}s, load avg $(cut -d' ' -f1-3 /proc/loadavg)"

for srv in batch default; do
    PORT[$srv]=$(bench_free_port)
    extra=()
    [ "$srv" = default ] && extra=(--sched default)
    "${LAUNCH[@]}" "$PCHTTP" --listen "127.0.0.1:${PORT[$srv]}" --threads "$THREADS" "${extra[@]}" \
        >"$TMP/$srv.out" 2>"$TMP/$srv.err" &
    PID[$srv]=$!
    bench_wait_port "${PORT[$srv]}" || { echo "$srv did not start: $(tail -3 "$TMP/$srv.err")" >&2; exit 1; }
    # the listener must be its own, not another process's on the port bench_free_port gave
    bench_port_owned "${PORT[$srv]}" "${PID[$srv]}" || {
        echo "$srv did not start: 127.0.0.1:${PORT[$srv]} is held by" \
            "$(bench_port_holder "${PORT[$srv]}")" >&2
        exit 1
    }
done
grep -h '^scheduling' "$TMP/batch.out" | sed 's/^/  batch: /'

# thread states of server SRV: name, schedstat (run ns, wait ns, slices), involuntary switches
threads_state() {
    local tk
    for tk in /proc/"${PID[$1]}"/task/*; do
        echo "$(tr -d ' ' <"$tk/comm") $(cat "$tk/schedstat") $(awk '/nr_involuntary/ {print $3}' "$tk/sched")"
    done
}
# watch_end SRV CONNS WORKLOAD ROUND WRK_OUTPUT: the --watch record of one load
watch_end() {
    {
        echo "== $1 c$2 $3 round $4"
        nstat 2>/dev/null | grep -E 'Retrans|Timeouts|ListenOverflows|ListenDrops|ReqQFull|BacklogDrop|Resets|AttemptFails'
        threads_state "$1" >"$TMP/ss1"
        paste -d' ' "$TMP/ss0" "$TMP/ss1" | awk '{printf "  %s run_ms=%.1f wait_ms=%.1f slices=%d involuntary=%d\n",
            $1, ($7 - $2) / 1e6, ($8 - $3) / 1e6, $9 - $4, $10 - $5}'
        grep -E 'Latency|Socket errors|Non-2xx' "$5"
    } >>"$WATCH"
}

RES=$TMP/results.tsv
: >"$RES"
# one load: one_load SRV CONNS WORKLOAD ROUND
one_load() {
    local srv=$1 c=$2 wl=$3 r=$4 t=2 hdr=() c0 c1 w0 w1 out
    [ "$c" -lt 2 ] && t=1
    [ "$wl" = churn ] && hdr=(-H "Connection: close")
    out=$TMP/wrk.txt
    if [ -n "$WATCH" ]; then
        threads_state "$srv" >"$TMP/ss0"
        nstat -n >/dev/null 2>&1
    fi
    c0=$(bench_cpu_ticks "${PID[$srv]}")
    w0=$(bench_wakeups "${PID[$srv]}")
    WRK_THREADS=$t bench_wrk "$out" "http://127.0.0.1:${PORT[$srv]}/" "$SECS" "$c" \
        --latency "${hdr[@]}" >/dev/null
    c1=$(bench_cpu_ticks "${PID[$srv]}")
    w1=$(bench_wakeups "${PID[$srv]}")
    bench_alive_or_exit "${PID[$srv]}" "$srv died during c$c $wl round $r" "$TMP/$srv.err"
    [ -n "$WATCH" ] && watch_end "$srv" "$c" "$wl" "$r" "$out"
    awk -v srv="$srv" -v c="$c" -v wl="$wl" -v r="$r" -v secs="$SECS" -v tick="$(getconf CLK_TCK)" \
        -v cpu=$((c1 - c0)) -v wk=$((w1 - w0)) '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
        /requests in/ {n = $1} $1 == "50%" {p50 = us($2)} $1 == "99%" {p99 = us($2)}
        END {
            if (n == 0) { printf "%s c%s %s: no requests\n", srv, c, wl > "/dev/stderr"; exit }
            printf "%s\t%s\t%s\t%s\t%.0f\t%.2f\t%.3f\t%.0f\t%.0f\n", srv, c, wl, r, n / secs,
                   cpu / tick * 1e6 / n, wk / n, p50, p99
        }' "$out" >"$TMP/row"
    cat "$TMP/row" >>"$RES" # nothing when no request was served
    awk -F'\t' '{printf "  %-8s c%-4s %-6s round %s: %8s/s %7s us %6s wake p50 %6s us p99 %7s us\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$TMP/row"
}

for c in $CONNS_LIST; do
    for r in $(seq "$ROUNDS"); do
        order="batch default"
        [ $((r % 2)) -eq 0 ] && order="default batch"
        for wl in churn ka; do
            for srv in $order; do one_load "$srv" "$c" "$wl" "$r"; done
        done
    done
done

python3 - "$RES" <<'EOF'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for srv, c, wl, r, rate, cpu, wake, p50, p99 in rows:
    by[(srv, int(c), wl, r)] = [float(rate), float(cpu), float(wake), float(p50), float(p99)]
keys = sorted({(k[1], k[2]) for k in by}, key=lambda k: (k[0], k[1]))
names = ["req/s", "CPU us/req", "wake-ups/req", "p50 us", "p99 us"]
print("\nsummary: median over rounds; batch/default = median of the per-round ratios")
print("%-5s %-6s %-13s %10s %10s %14s" % ("conns", "load", "metric", "batch", "default", "batch/default"))
for c, wl in keys:
    rounds = sorted({k[3] for k in by if k[1] == c and k[2] == wl})
    for i, name in enumerate(names):
        b = [by[("batch", c, wl, r)][i] for r in rounds if ("batch", c, wl, r) in by]
        d = [by[("default", c, wl, r)][i] for r in rounds if ("default", c, wl, r) in by]
        rat = [by[("batch", c, wl, r)][i] / by[("default", c, wl, r)][i] for r in rounds
               if ("batch", c, wl, r) in by and by.get(("default", c, wl, r), [0] * 5)[i]]
        if not b or not d:
            continue
        print("%-5d %-6s %-13s %10.3g %10.3g %14s" % (c, wl, name, st.median(b), st.median(d),
              "%.2f" % st.median(rat) if rat else "-"))
EOF
