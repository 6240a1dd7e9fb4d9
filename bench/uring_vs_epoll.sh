#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# io_uring vs epoll, same binary, same machine, alternating rounds.
#
#   bench/uring_vs_epoll.sh BUILD_DIR [ROUNDS] [SECONDS]
#
# Builds nothing: runs BUILD_DIR/bin/pc-http (if built) and BUILD_DIR/bin/pc-echo
# on 127.0.0.1 with --backend uring, then --backend epoll, ROUNDS times
# (default 3), each round SECONDS long (default 5, at most 10). Workloads:
#   http-keepalive  wrk, CONNS keep-alive connections          (pc-http, wrk)
#   http-churn      wrk with "Connection: close": one connection per request
#   echo            a Python ping-pong loader: CONNS connections, MSG bytes
#   echo-bulk       BULK_CONNS (default 2) connections streaming both ways;
#                   one "request" = 64 KiB echoed
# For each round it reads the server's utime+stime from /proc/PID/stat before
# and after the load and prints requests/s and server CPU microseconds per
# request; the summary gives the totals per backend and the ratios
# uring/epoll (CPU per request: lower is better; req/s: higher is better).
# Environment: THREADS (server workers, default 2), CONNS (default 64; a
# list such as "100 1000" runs the connection workloads once per count, each
# reported as WORKLOAD/cN, inside the same rounds), MSG (echo message bytes,
# default 64), BULK_CONNS, WORKLOADS (default
# "http-keepalive http-churn echo echo-bulk"). Other variables pass through to
# the servers (PORTCULLIS_URING_*, see docs/uring.md).
#
# Within a round the backends take turns, and the one that goes first
# alternates from round to round (uring-epoll, epoll-uring, ...), so a load
# that drifts during a round does not favour either.
#
# A missing client (wrk) is installed from Debian's packages when it can be
# (root or sudo); a workload that still cannot run is skipped with a line,
# and a run left with nothing to measure exits 2.
# It measures, it never judges: the exit status is 0 whatever the figures.
# The load generator runs on the same machine and competes for the CPUs, so
# req/s is a property of the pair; CPU per request is the server's alone.
set -u
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR [ROUNDS] [SECONDS]" >&2
    exit 2
fi
BUILD=$1
ROUNDS=${2:-3}
SECS=${3:-5}
[ "$SECS" -gt 10 ] 2>/dev/null && SECS=10
[ "$SECS" -lt 1 ] 2>/dev/null && SECS=1
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
MSG=${MSG:-64}
BULK_CONNS=${BULK_CONNS:-2}
WORKLOADS=${WORKLOADS:-"http-keepalive http-churn echo echo-bulk"}
TICK=$(getconf CLK_TCK)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ -n "${SPID:-}" ] && kill -KILL "$SPID" 2>/dev/null' EXIT

# ---- the echo loader (Python, no build) -----------------------------------------
cat > "$TMP/echo_load.py" <<'EOF'
# ping-pong: each connection sends SIZE bytes and waits for their echo (one
# request); bulk: each connection streams and reads back concurrently, one
# request = 64 KiB echoed.
import selectors, socket, sys, time
port, secs, conns, size, mode = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
if mode == "bulk":
    size = 65536
msg = b"x" * size
sel = selectors.DefaultSelector()
done = 0
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    st = {"got": 0}
    if mode == "bulk":
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
    else:
        s.send(msg)
        sel.register(s, selectors.EVENT_READ, st)
end = time.monotonic() + secs
while time.monotonic() < end:
    for key, ev in sel.select(0.2):
        s, st = key.fileobj, key.data
        if ev & selectors.EVENT_WRITE:
            try:
                s.send(msg)
            except BlockingIOError:
                pass
        if ev & selectors.EVENT_READ:
            try:
                b = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not b:
                sys.exit("echo server closed a connection")
            st["got"] += len(b)
            while st["got"] >= size:  # one full echo: one request
                st["got"] -= size
                done += 1
                if mode != "bulk":
                    s.send(msg)
print(done)
EOF

# ---- helpers --------------------------------------------------------------------------
SPID=
PORT=
start_server() { # bin backend
    local out=$TMP/server.out
    rm -f "$out"
    "$1" --listen 127.0.0.1:0 --threads "$THREADS" --backend "$2" >"$out" 2>"$TMP/server.err" &
    SPID=$!
    for _ in $(seq 50); do
        grep -q "listening on" "$out" 2>/dev/null && break
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    PORT=$(awk -F: '/listening on/ {print $NF; exit}' "$out" 2>/dev/null)
    if [ -z "$PORT" ]; then
        echo "  cannot start $(basename "$1") --backend $2: $(tail -1 "$TMP/server.err")" >&2
        stop_server
        return 1
    fi
}
stop_server() {
    [ -z "$SPID" ] && return
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
}
cpu_ticks() { # utime+stime of $SPID (fields 14, 15; counted after the ")" of comm)
    sed 's/.*) //' "/proc/$SPID/stat" | awk '{print $12 + $13}'
}
run_load() { # workload -> prints the number of requests done
    case $1 in
    http-keepalive)
        timeout $((SECS + 5)) wrk -t1 -c"$conns" -d"${SECS}s" "http://127.0.0.1:$PORT/" 2>/dev/null |
            awk '/requests in/ {print $1}' ;;
    http-churn)
        timeout $((SECS + 5)) wrk -t1 -c"$conns" -d"${SECS}s" -H "Connection: close" \
            "http://127.0.0.1:$PORT/" 2>/dev/null | awk '/requests in/ {print $1}' ;;
    echo)
        timeout $((SECS + 5)) python3 "$TMP/echo_load.py" "$PORT" "$SECS" "$conns" "$MSG" pingpong \
            2>/dev/null ;;
    echo-bulk)
        timeout $((SECS + 5)) python3 "$TMP/echo_load.py" "$PORT" "$SECS" "$BULK_CONNS" 0 bulk \
            2>/dev/null ;;
    esac
}

ROWS=$TMP/rows.tsv
: >"$ROWS"
# The server a workload runs against, and the client it needs.
bin_of() { case $1 in http-*) echo "$BUILD/bin/pc-http" ;; *) echo "$BUILD/bin/pc-echo" ;; esac; }
# The units measured: WORKLOAD, or WORKLOAD/cN per connection count.
UNITS=
for wl in $WORKLOADS; do
    case $wl in
    http-*) need=wrk ;;
    echo*) need=python3 ;;
    *) echo "unknown workload $wl" >&2; continue ;;
    esac
    bin=$(bin_of "$wl")
    if [ ! -x "$bin" ]; then echo "  $wl: skipped ($(basename "$bin") not built)"; continue; fi
    [ "$need" = wrk ] && bench_need_cmd wrk wrk
    if ! command -v "$need" >/dev/null; then echo "  $wl: skipped ($need not installed)"; continue; fi
    case $wl in
    echo-bulk) UNITS="$UNITS $wl" ;;
    *) read -ra counts <<<"$CONNS"
       if [ ${#counts[@]} -gt 1 ]; then for c in "${counts[@]}"; do UNITS="$UNITS $wl/c$c"; done
       else UNITS="$UNITS $wl"; fi ;;
    esac
done
if [ -z "$UNITS" ]; then
    echo "nothing to measure: every workload was skipped" >&2
    exit 2
fi
printf '%-20s %-6s %5s %12s %10s %14s\n' workload backend round requests "req/s" "cpu us/req"
for unit in $UNITS; do
    wl=${unit%%/*}
    conns=$CONNS
    case $unit in */c*) conns=${unit##*/c} ;; esac
    bin=$(bin_of "$wl")
    for r in $(seq "$ROUNDS"); do
        order="uring epoll"
        [ $((r % 2)) -eq 0 ] && order="epoll uring"
        for be in $order; do
            start_server "$bin" "$be" || continue
            c0=$(cpu_ticks)
            t0=$(date +%s.%N)
            n=$(run_load "$wl")
            t1=$(date +%s.%N)
            c1=$(cpu_ticks)
            if ! kill -0 "$SPID" 2>/dev/null; then # its CPU and requests would be wrong
                echo "$(basename "$bin") --backend $be died during $unit round $r:" \
                    "$(tail -3 "$TMP/server.err")" >&2
                exit 1
            fi
            stop_server
            n=${n:-0}
            [ "$n" -gt 0 ] 2>/dev/null || { echo "  $unit $be round $r: no requests completed"; continue; }
            dt=$(echo "$t1 - $t0" | bc -l)
            rps=$(echo "$n / $dt" | bc -l)
            cpr=$(echo "($c1 - $c0) * 1000000 / $TICK / $n" | bc -l)
            printf '%s\t%s\t%d\t%d\t%s\t%s\t%s\n' "$unit" "$be" "$r" "$n" "$dt" "$((c1 - c0))" "$cpr" >>"$ROWS"
            printf '%-20s %-6s %5d %12d %10.0f %14.2f\n' "$unit" "$be" "$r" "$n" "$rps" "$cpr"
        done
    done
done

# Totals over all rounds, and the median over rounds of the per-round ratio
# (uring round r against epoll round r: robust when the machine's load drifts).
echo
echo "summary (ratio = uring / epoll; total: all rounds pooled; median, min-max: of the per-round ratios)"
awk -F'\t' -v tick="$TICK" -v order="$UNITS" '
{ k = $1 SUBSEP $2; req[k] += $4; t[k] += $5; cpu[k] += $6
  rps[$1, $2, $3] = $4 / $5; cpr[$1, $2, $3] = $7; wl[$1] = 1; if ($3 > nr) nr = $3 }
function median(a, n,   i, j, x) {
  for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
END {
  printf "%-20s %11s %11s %7s %7s %11s %11s %7s %7s %11s\n", "workload", "uring rq/s", "epoll rq/s",
         "total", "median", "uring cpu", "epoll cpu", "total", "median", "min-max"
  printf "%-20s %11s %11s %7s %7s %11s %11s %7s %7s %11s\n", "", "", "", "ratio", "ratio", "us/req",
         "us/req", "ratio", "ratio", "cpu ratio"
  nw = split(order, ws, " ")
  for (iw = 1; iw <= nw; iw++) {
    w = ws[iw]; if (!(w in wl)) continue
    u = w SUBSEP "uring"; e = w SUBSEP "epoll"
    if (!req[u] || !req[e]) continue
    n = 0; delete a; delete b
    for (r = 1; r <= nr; r++)
      if ((w, "uring", r) in rps && (w, "epoll", r) in rps) {
        n++; a[n] = rps[w, "uring", r] / rps[w, "epoll", r]
        b[n] = cpr[w, "epoll", r] > 0 ? cpr[w, "uring", r] / cpr[w, "epoll", r] : 0 }
    ru = req[u] / t[u]; re = req[e] / t[e]
    cu = cpu[u] * 1e6 / tick / req[u]; ce = cpu[e] * 1e6 / tick / req[e]
    mb = n ? median(b, n) : 0 # sorts b: b[1] is the lowest ratio, b[n] the highest
    printf "%-20s %11.0f %11.0f %7.2f %7.2f %11.2f %11.2f %7.2f %7.2f %5.2f-%.2f\n", w, ru, re, ru / re,
           n ? median(a, n) : 0, cu, ce, ce ? cu / ce : 0, mb, n ? b[1] : 0, n ? b[n] : 0
  }
}' "$ROWS"
exit 0
