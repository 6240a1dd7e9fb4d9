#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pc-http against nginx on the same machine, in the same run, alternating.
#
#   bench/http_vs_nginx.sh BUILD_DIR [--rounds N] [--duration S] [--threads N]
#                          [--conns N] [--idle N] [--no-idle] [--no-stress]
#
# Starts nginx (a generated config in a temp dir: loopback only,
# worker_processes = --threads, return 200 "Hello, World!", access_log off)
# and BUILD_DIR/bin/pc-http --threads N, then for each round (default 3, each
# load --duration seconds, default 5, at most 30) drives both, one after the
# other and in alternating order:
#   ka      wrk -t2 -cCONNS keep-alive                     -> req/s, server CPU/request
#   churn   wrk -t2 -cCONNS -H 'Connection: close'          -> connections/s, CPU/connection
#   ka-ps   pc-stress -cCONNS -t2 (keep-alive)              -> req/s
#   churn-ps pc-stress -cCONNS -t2 --close                  -> connections/s
# then holds --idle (default 15000) idle connections on each server, first
# without any request, then after one request each (keep-alive idle), and
# reports the server's RSS growth per connection (VmRSS; nginx: master and
# workers summed).
#
# Server CPU = utime+stime from /proc/PID/stat (nginx: master + workers)
# over the load, divided by the requests (or connections) served. The load
# generators run on the same machine and share its CPUs, so req/s is a
# property of the pair; CPU per request is the server's alone.
#
# Environment: PC_HTTP_ARGS (extra pc-http flags, e.g. "--backend epoll" or,
# once the filter lands, "--rules FILE"), NGINX (nginx binary).
#
# It measures and never judges: the exit status is 0 whatever the figures
# (non-zero only for bad usage or when a server cannot be started).
set -u

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
if [ $# -lt 1 ] || [ ! -d "$1" ]; then usage; fi
BUILD=$(cd "$1" && pwd)
shift
ROUNDS=3
SECS=5
THREADS=2
CONNS=100
IDLE=15000
DO_IDLE=1
DO_STRESS=1
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --no-idle) DO_IDLE=0 ;;
    --no-stress) DO_STRESS=0 ;;
    *) usage ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30
[ "$SECS" -ge 1 ] 2>/dev/null || SECS=5
[ "$ROUNDS" -ge 1 ] 2>/dev/null || ROUNDS=3

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

PCHTTP=$BUILD/bin/pc-http
PCSTRESS=$BUILD/bin/pc-stress
[ -x "$PCHTTP" ] || { echo "no $PCHTTP (build the pc-http target)" >&2; exit 2; }
[ -x "$PCSTRESS" ] || DO_STRESS=0
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then
    bench_need_cmd nginx nginx-light nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
command -v wrk >/dev/null || bench_need_cmd wrk wrk
[ -x "$NGINX" ] || { echo "nginx not available" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not available" >&2; exit 2; }

# 15k idle connections per server plus the load generators' own sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDLIM=$(ulimit -n)
if [ "$IDLE" -gt $((FDLIM - 500)) ]; then
    IDLE_PROCS=$(((IDLE + FDLIM - 600) / (FDLIM - 500)))
else
    IDLE_PROCS=1
fi
[ "$IDLE_PROCS" -lt 2 ] && IDLE_PROCS=2

TMP=$(mktemp -d /tmp/pc-bench.XXXXXX)
PC_PID=
NGX_PID=
# shellcheck disable=SC2034 # used by lib.sh
IDLE_PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    bench_idle_close
    bench_stop "$PC_PID" TERM
    bench_stop "$NGX_PID" TERM
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- machine --------------------------------------------------------------------------
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}'),"\
    "pc-http: $PCHTTP ${PC_HTTP_ARGS:-}"
echo "rounds $ROUNDS x ${SECS}s, $THREADS workers each, $CONNS connections, idle $IDLE," \
    "file limit $FDLIM, load avg $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- servers --------------------------------------------------------------------------
PC_PORT=
NGX_PORT=
start_servers() {
    PC_PORT=$(bench_free_port)
    NGX_PORT=$(bench_free_port)
    while [ "$NGX_PORT" = "$PC_PORT" ]; do NGX_PORT=$(bench_free_port); done
    # shellcheck disable=SC2086
    "$PCHTTP" --listen "127.0.0.1:$PC_PORT" --threads "$THREADS" --max-conns $((IDLE + 2000)) \
        ${PC_HTTP_ARGS:-} >"$TMP/pc.out" 2>"$TMP/pc.err" &
    PC_PID=$!
    bench_nginx_conf "$TMP/nginx" "$NGX_PORT" "$THREADS"
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.out" 2>&1 &
    NGX_PID=$!
    if ! bench_wait_port "$PC_PORT"; then
        echo "pc-http did not start: $(cat "$TMP/pc.err")" >&2
        exit 1
    fi
    if ! bench_wait_port "$NGX_PORT"; then
        echo "nginx did not start: $(cat "$TMP/nginx.out" "$TMP/nginx/error.log" 2>/dev/null)" >&2
        exit 1
    fi
    sleep 0.3
    NGX_PIDS="$NGX_PID $(bench_children "$NGX_PID" | tr '\n' ' ')"
    PC_PIDS=$PC_PID
}
stop_servers() {
    bench_stop "$PC_PID" TERM
    bench_stop "$NGX_PID" TERM
    PC_PID=
    NGX_PID=
}
start_servers
echo "pc-http pid $PC_PID port $PC_PORT ($(grep -o 'backend [a-z_]*' "$TMP/pc.err" | head -1));" \
    "nginx pids $NGX_PIDS port $NGX_PORT"

RES=$TMP/results.tsv
: >"$RES"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"; }
port_of() { [ "$1" = pc ] && echo "$PC_PORT" || echo "$NGX_PORT"; }
pids_of() { [ "$1" = pc ] && echo "$PC_PIDS" || echo "$NGX_PIDS"; }

# wrk run: prints "requests req/s errors"
run_wrk() { # port extra-args...
    local port=$1
    shift
    timeout $((SECS + 15)) wrk -t2 -c"$CONNS" -d"${SECS}s" "$@" "http://127.0.0.1:$port/" \
        >"$TMP/wrk.out" 2>&1
    awk '/requests in/ {n=$1} /Requests\/sec/ {r=$2}
         /Socket errors/ {gsub(",", ""); e+=$4+$6+$8+$10} /Non-2xx/ {e+=$NF}
         END {printf "%d %.1f %d\n", n, r, e}' "$TMP/wrk.out"
}

# pc-stress run: prints "requests req/s connects/s errors"
run_ps() { # port extra-args...
    local port=$1
    shift
    timeout $((SECS + 15)) "$PCSTRESS" "http://127.0.0.1:$port/" -c "$CONNS" -t 2 -d "$SECS" \
        --json "$@" >"$TMP/ps.out" 2>/dev/null
    python3 -c 'import json,sys
try:
    j = json.load(open(sys.argv[1]))
    print(j["requests"], j["req_per_s"], j["connects_per_s"], j["errors_total"])
except Exception:
    print(0, 0, 0, 0)' "$TMP/ps.out"
}

printf '\n%-9s %-6s %5s %11s %12s %13s %7s\n' load server round requests "per second" \
    "cpu us/unit" errors
one_load() { # load server round
    local load=$1 srv=$2 round=$3 port pids c0 c1 n rate err cpu
    port=$(port_of "$srv")
    pids=$(pids_of "$srv")
    # shellcheck disable=SC2086
    c0=$(bench_cpu_ticks $pids)
    case $load in
    ka) read -r n rate err < <(run_wrk "$port") ;;
    churn) read -r n rate err < <(run_wrk "$port" -H "Connection: close") ;;
    ka-ps) read -r n rate _ err < <(run_ps "$port") ;;
    churn-ps) read -r n _ rate err < <(run_ps "$port" --close) ;;
    esac
    # shellcheck disable=SC2086
    c1=$(bench_cpu_ticks $pids)
    cpu=$(python3 -c "print('%.2f' % (($c1 - $c0) * 1e6 / $CLK_TCK / $n) if $n > 0 else 'nan')")
    printf '%-9s %-6s %5d %11d %12.0f %13s %7d\n' "$load" "$srv" "$round" "${n:-0}" "${rate:-0}" \
        "$cpu" "${err:-0}"
    record "$load.rate" "$srv" "$round" "${rate:-0}"
    record "$load.cpu" "$srv" "$round" "$cpu"
}

LOADS="ka churn"
[ "$DO_STRESS" = 1 ] && LOADS="ka churn ka-ps churn-ps"
for r in $(seq "$ROUNDS"); do
    for load in $LOADS; do
        if [ $((r % 2)) -eq 1 ]; then order="pc nginx"; else order="nginx pc"; fi
        for srv in $order; do
            one_load "$load" "$srv" "$r"
            sleep 1 # let TIME_WAIT and backlog settle between runs
        done
    done
done

# ---- idle connections -------------------------------------------------------------------
active_of() { # server -> open connections as the server counts them
    if [ "$1" = pc ]; then
        python3 - "$PC_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
d = b""
while True:
    b = s.recv(65536)
    if not b: break
    d += b
for l in d.decode().splitlines():
    if l.startswith("pc_connections_active "): print(int(l.split()[1]) - 1)
EOF
    else
        python3 - "$NGX_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /nginx_status HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
d = b""
while True:
    b = s.recv(65536)
    if not b: break
    d += b
for l in d.decode().splitlines():
    if l.startswith("Active connections:"): print(int(l.split()[2]) - 1)
EOF
    fi
}

wait_active() { # server count-at-least|at-most target
    local i a
    for i in $(seq 150); do
        a=$(active_of "$1")
        if [ "$2" = ge ] && [ "${a:-0}" -ge "$3" ]; then return 0; fi
        if [ "$2" = le ] && [ "${a:-999999}" -le "$3" ]; then return 0; fi
        sleep 0.2
    done
    return 1
}

if [ "$DO_IDLE" = 1 ]; then
    printf '\n%-9s %-6s %9s %11s %11s %14s\n' idle server conns "rss before" "rss after" \
        "bytes/conn"
    for mode in none request; do
        # fresh processes: memory kept from earlier runs (pc-http's
        # connection table never shrinks) must not hide the growth
        stop_servers
        start_servers
        for srv in pc nginx; do # warm up: threads, buffers, first table chunk
            timeout 10 wrk -t1 -c10 -d1s "http://127.0.0.1:$(port_of "$srv")/" >/dev/null 2>&1
        done
        for srv in pc nginx; do
            pids=$(pids_of "$srv")
            wait_active "$srv" le 0 || true
            sleep 1
            # shellcheck disable=SC2086
            before=$(bench_rss_kb $pids)
            if ! bench_idle_open "$(port_of "$srv")" "$IDLE" "$IDLE_PROCS" "$mode" "$TMP"; then
                echo "  idle $mode $srv: could not open $IDLE connections" >&2
                bench_idle_close
                continue
            fi
            wait_active "$srv" ge "$IDLE" || echo "  idle $mode $srv: server sees $(active_of "$srv")" >&2
            sleep 1
            # shellcheck disable=SC2086
            after=$(bench_rss_kb $pids)
            bench_idle_close
            per=$(python3 -c "print('%.0f' % (($after - $before) * 1024 / $IDLE))")
            name=idle
            [ "$mode" = request ] && name=idle-ka
            printf '%-9s %-6s %9d %9d kB %9d kB %14s\n' "$name" "$srv" "$IDLE" "$before" "$after" "$per"
            record "$name.bytes" "$srv" 1 "$per"
            record "$name.rss_kb" "$srv" 1 "$after"
        done
    done
fi

# ---- summary ------------------------------------------------------------------------------
echo
python3 - "$RES" <<'EOF'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
vals, by_round = {}, {}
for metric, srv, rnd, v in rows:
    try:
        x = float(v)
    except ValueError:
        continue
    if x != x:
        continue
    vals.setdefault((metric, srv), []).append(x)
    by_round[(metric, srv, rnd)] = x
# metric, label, higher is better, target ratio (pc/nginx), goal
table = [
    ("ka.rate", "keep-alive req/s (wrk)", True, 0.95, None),
    ("ka.cpu", "server CPU us/request (wrk keep-alive)", False, 1.0, 0.85),
    ("churn.rate", "churn conn/s (wrk Connection: close)", True, 1.0, None),
    ("churn.cpu", "server CPU us/connection (wrk churn)", False, None, None),
    ("ka-ps.rate", "keep-alive req/s (pc-stress)", True, None, None),
    ("churn-ps.rate", "churn conn/s (pc-stress --close)", True, 1.0, None),
    ("idle.bytes", "RSS bytes per idle conn (no request)", False, 1.0, 0.5),
    ("idle-ka.bytes", "RSS bytes per idle conn (after 1 request)", False, 1.0, 0.5),
    ("idle-ka.rss_kb", "RSS kB with the idle conns held", False, None, None),
]
print("summary: pc-http and nginx = medians over rounds; ratio = median over rounds of")
print("pc-http / nginx within the round (the two runs of a round are back to back, so")
print("background load on a shared machine cancels better than in a ratio of medians)")
fmt = "%-42s %12s %12s %7s  %s"
print(fmt % ("metric", "pc-http", "nginx", "ratio", "target"))
rounds = sorted({r for (_, _, r) in by_round})
for key, label, higher, target, goal in table:
    a, b = vals.get((key, "pc")), vals.get((key, "nginx"))
    if not a or not b:
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    per = [by_round[(key, "pc", r)] / by_round[(key, "nginx", r)] for r in rounds
           if by_round.get((key, "pc", r)) is not None and by_round.get((key, "nginx", r))]
    ratio = statistics.median(per) if per else float("nan")
    t = ""
    if target is not None:
        ok = ratio >= target if higher else ratio <= target
        t = "%s %.2f%s: %s" % (">=" if higher else "<=", target,
                               (" (goal %.2f)" % goal) if goal else "", "met" if ok else "NOT met")
    print(fmt % (label, "%.1f" % ma, "%.1f" % mb, "%.2f" % ratio, t))
EOF
exit 0
