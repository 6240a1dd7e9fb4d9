#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pc-http against nginx and HAProxy on the same machine, in the same run,
# in rotating order.
#
#   bench/http_vs_peers.sh BUILD_DIR [--rounds N] [--duration S] [--threads N]
#                          [--conns N] [--idle N] [--no-idle] [--no-stress]
#                          [--list4 N] [--list6 N] [--no-list]
#
# Starts nginx (a generated config in a temp dir: loopback only,
# worker_processes = --threads, return 200 "Hello, World!", access_log off),
# HAProxy 2.6 (nbthread = --threads, maxconn 9000 so that it fits the 20000
# open-files cap, http-request return status 200 "Hello, World!") and
# BUILD_DIR/bin/pc-http --threads N, then for each round (default 3, each
# load --duration seconds, default 5, at most 30) drives all three, one after
# the other, the order rotating from round to round:
#   ka      wrk -t2 -cCONNS keep-alive                     -> req/s, server CPU/request
#   churn   wrk -t2 -cCONNS -H 'Connection: close'          -> connections/s, CPU/connection
#   ka-ps   pc-stress -cCONNS -t2 (keep-alive)              -> req/s
#   churn-ps pc-stress -cCONNS -t2 --close                  -> connections/s
# Then the servers are restarted with a deny list of --list4 IPv4 (default
# 900000) and --list6 IPv6 (default 100000) random prefixes (bench/gen_prefixes.py;
# none covers the 127.0.0.1 client) and the same rounds run
#   churn-1m wrk -t2 -cCONNS -H 'Connection: close'         -> connections/s, CPU/connection
# each server loading the list its own way: pc-http --rules FILE; HAProxy
# "acl bad src -f FILE" + "tcp-request connection reject if bad"; nginx
# "geo $bad { include FILE; }" + "if ($bad) { return 444; }" (the closest
# nginx has: its http module judges once a request was read, not at accept).
# Then it holds --idle (default 15000) idle connections on each server, first
# without any request, then after one request each (keep-alive idle), and
# reports the server's RSS growth per connection (VmRSS; nginx: master and
# workers summed). HAProxy refuses more than maxconn (9000) connections, so
# it holds min(--idle, 8500) and its figure is per connection it held.
#
# Server CPU = utime+stime from /proc/PID/stat (nginx: master + workers)
# over the load, divided by the requests (or connections) served. The load
# generators run on the same machine and share its CPUs, so req/s is a
# property of the pair; CPU per request is the server's alone. Wake-ups =
# voluntary context switches of all the server's threads (a thread slept
# and was woken) over the load, divided the same way: where two servers do
# the same work per request, the one that sleeps and is woken more often
# pays the scheduler for it.
#
# pc-http runs as shipped: its accept data wait (3 s, TCP_DEFER_ACCEPT) is
# on; nginx's and HAProxy's equivalents (listen ... deferred, bind ...
# defer-accept) are off, as they ship. So is its batch scheduling (its
# threads under SCHED_BATCH, --sched batch); nginx and HAProxy have no
# setting for it and run under the default policy, unless PEER_SCHED=batch.
#
# Environment: PC_HTTP_ARGS (extra pc-http flags, e.g. "--backend epoll"),
# NGINX, HAPROXY (binaries), SERVERS (default "pc nginx haproxy"; add, in
# the same rounds, "pcb" for a second pc-http with PC_BATCH_ARGS, default
# "--accept-batch-us 1000", and "pcn" for one with "--accept-data-wait 0":
# the summary then has a table for each; add "nginxd" for an nginx with
# "listen ... deferred", nginx's accept data wait: a peer in every table;
# "pcd" for a pc-http with "--sched default").
# PEER_SCHED=batch starts nginx and HAProxy under "chrt -b 0" (SCHED_BATCH,
# what a service manager can give any server: systemd's
# CPUSchedulingPolicy=batch), to compare like with like.
# SESSION=own starts each server in a session of its own (setsid), as a
# service manager or a login would: with the kernel's autogroup scheduling
# (kernel.sched_autogroup_enabled=1, Debian's default) each server is then
# scheduled as a group against the load generators' group, instead of as
# threads among theirs (SESSION=shared, the default). The machine line says
# which, and whether autogroup is on. docs/benchmarks.md shows what it
# changes.
#
# It measures and never judges: the exit status is 0 whatever the figures
# (non-zero only for bad usage or when a server cannot be started).
set -u

usage() {
    sed -n '3,69p' "$0" | sed 's/^# \{0,1\}//' >&2
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
LIST4=900000
LIST6=100000
DO_LIST=1
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --no-idle) DO_IDLE=0 ;;
    --no-stress) DO_STRESS=0 ;;
    --list4) LIST4=$2; shift ;;
    --list6) LIST6=$2; shift ;;
    --no-list) DO_LIST=0 ;;
    *) usage ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30
[ "$SECS" -ge 1 ] 2>/dev/null || SECS=5
[ "$ROUNDS" -ge 1 ] 2>/dev/null || ROUNDS=3
[ "$IDLE" -ge 1 ] 2>/dev/null || { IDLE=0; DO_IDLE=0; } # --idle 0: as --no-idle

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

PCHTTP=$BUILD/bin/pc-http
PCSTRESS=$BUILD/bin/pc-stress
[ -x "$PCHTTP" ] || { echo "no $PCHTTP (build the pc-http target)" >&2; exit 2; }
[ -x "$PCSTRESS" ] || DO_STRESS=0
SERVERS=${SERVERS:-pc nginx haproxy}
bench_session_launch shared
PEER_SCHED=${PEER_SCHED:-default}
case $PEER_SCHED in
default) PEER_LAUNCH=() ;;
batch) PEER_LAUNCH=(chrt -b 0) ;;
*) echo "PEER_SCHED must be default or batch" >&2; exit 2 ;;
esac
# the peers SERVERS names, installed if missing (and only those)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
case " $SERVERS " in *" nginx "* | *" nginxd "*)
    if [ ! -x "$NGINX" ]; then
        bench_need_cmd nginx nginx-light nginx
        NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    fi
    [ -x "$NGINX" ] || { echo "nginx not available (install it, or leave it out of SERVERS)" >&2; exit 2; } ;;
esac
case " $SERVERS " in *" haproxy "*)
    if [ ! -x "$HAPROXY" ]; then
        bench_need_cmd haproxy haproxy
        HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
    fi
    [ -x "$HAPROXY" ] || { echo "haproxy not available (install it, or leave it out of SERVERS)" >&2; exit 2; } ;;
esac
command -v wrk >/dev/null || bench_need_cmd wrk wrk
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
HAP_MAXCONN=9000

TMP=$(mktemp -d /tmp/pc-bench.XXXXXX)
declare -A PID PIDS PORT
# shellcheck disable=SC2034 # used by lib.sh
IDLE_PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    bench_idle_close
    stop_servers
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- machine --------------------------------------------------------------------------
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
NGINX_V=none HAPROXY_V=none
[ -x "$NGINX" ] && NGINX_V=$("$NGINX" -v 2>&1 | sed 's/.*version: //')
[ -x "$HAPROXY" ] && HAPROXY_V=$("$HAPROXY" -v 2>&1 | awk 'NR==1 {print $3}')
echo "nginx: $NGINX_V, haproxy: $HAPROXY_V, wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), pc-http: $PCHTTP ${PC_HTTP_ARGS:-}"
echo "servers' session: $SESSION (kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a))"
case " $SERVERS " in *" pcb "*) echo "pcb: pc-http ${PC_HTTP_ARGS:-} ${PC_BATCH_ARGS:---accept-batch-us 1000}" ;; esac
case " $SERVERS " in *" pcn "*) echo "pcn: pc-http ${PC_HTTP_ARGS:-} --accept-data-wait 0" ;; esac
case " $SERVERS " in *" pcd "*) echo "pcd: pc-http ${PC_HTTP_ARGS:-} --sched default" ;; esac
echo "peers' scheduling: $PEER_SCHED"
case " $SERVERS " in *" nginxd "*) echo "nginxd: nginx with listen ... deferred" ;; esac
echo "rounds $ROUNDS x ${SECS}s, $THREADS workers each, $CONNS connections, idle $IDLE," \
    "file limit $FDLIM, load avg $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- servers --------------------------------------------------------------------------
# start_server SRV LIST: LIST is "" (no filter) or a gen_prefixes.py directory
start_server() {
    local srv=$1 list=$2 dir=$TMP/$1 port p
    mkdir -p "$dir"
    port=$(bench_free_port)
    for p in "${PORT[@]}"; do [ "$p" = "$port" ] && port=$(bench_free_port); done
    PORT[$srv]=$port
    case $srv in
    pc | pcb | pcn | pcd)
        local rules=() extra=
        [ -n "$list" ] && rules=(--rules "$list/rules.txt")
        [ "$srv" = pcb ] && extra=${PC_BATCH_ARGS:---accept-batch-us 1000}
        [ "$srv" = pcn ] && extra="--accept-data-wait 0"
        [ "$srv" = pcd ] && extra="--sched default"
        # shellcheck disable=SC2086 # PC_HTTP_ARGS and extra are lists of flags
        "${LAUNCH[@]}" "$PCHTTP" --listen "127.0.0.1:$port" --threads "$THREADS" --max-conns $((IDLE + 2000)) \
            "${rules[@]}" ${PC_HTTP_ARGS:-} $extra >"$dir/out.log" 2>"$dir/err.log" &
        ;;
    nginx | nginxd)
        bench_nginx_conf "$dir" "$port" "$THREADS"
        if [ "$srv" = nginxd ]; then
            sed -i "s|^\( *listen 127.0.0.1:$port\);|\1 deferred;|" "$dir/nginx.conf"
            grep -q "listen 127.0.0.1:$port deferred;" "$dir/nginx.conf" ||
                { echo "nginxd: could not add deferred to $dir/nginx.conf" >&2; exit 1; }
        fi
        if [ -n "$list" ]; then
            sed -i "s|^    server {|    geo \$bad { default 0; include $list/nginx_geo.conf; }\n    server {\n        if (\$bad) { return 444; }|" \
                "$dir/nginx.conf"
        fi
        "${LAUNCH[@]}" "${PEER_LAUNCH[@]}" "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$dir/out.log" 2>"$dir/err.log" &
        ;;
    haproxy)
        {
            echo "global"
            echo "    nbthread $THREADS"
            echo "    maxconn $HAP_MAXCONN"
            echo "    stats socket $dir/stats.sock"
            echo "defaults"
            echo "    mode http"
            echo "    timeout connect 5s"
            echo "    timeout client 75s"
            echo "    timeout server 30s"
            echo "    timeout http-request 75s"
            echo "    timeout http-keep-alive 75s"
            echo "frontend fe"
            echo "    bind 127.0.0.1:$port"
            echo "    maxconn $HAP_MAXCONN"
            if [ -n "$list" ]; then
                echo "    acl bad src -f $list/haproxy.lst"
                echo "    tcp-request connection reject if bad"
            fi
            echo '    http-request return status 200 content-type text/plain string "Hello, World!"'
        } >"$dir/haproxy.cfg"
        "${LAUNCH[@]}" "${PEER_LAUNCH[@]}" "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/out.log" 2>"$dir/err.log" &
        ;;
    esac
    PID[$srv]=$!
    local i
    for i in $(seq 600); do # a 1M-prefix list takes a few seconds to load
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" \
            2>/dev/null && break
        kill -0 "${PID[$srv]}" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.3
    PIDS[$srv]="${PID[$srv]} $(bench_children "${PID[$srv]}" | tr '\n' ' ')"
    # alive, answering, and the listener its own (not another process that
    # took the port bench_free_port gave: nginx retries its bind for seconds)
    # shellcheck disable=SC2086 # a list of PIDs
    if ! kill -0 "${PID[$srv]}" 2>/dev/null || ! bench_wait_port "$port" ||
        ! bench_port_owned "$port" ${PIDS[$srv]}; then
        echo "$srv did not start (listener on 127.0.0.1:$port:" \
            "$(bench_port_holder "$port"))" \
            "$(cat "$dir/err.log" "$dir/out.log" "$dir/error.log" 2>/dev/null | tail -5)" >&2
        exit 1
    fi
}
start_servers() { # [LIST]
    local srv
    for srv in $SERVERS; do start_server "$srv" "${1:-}"; done
    for srv in $SERVERS; do
        echo "  $srv: pids ${PIDS[$srv]}port ${PORT[$srv]}, $(cut -d' ' -f1 "/proc/${PID[$srv]}/autogroup" 2>/dev/null)"
    done
    grep -o 'backend [a-z_]*' "$TMP/pc/err.log" 2>/dev/null | head -1 | sed 's/^/  pc-http /'
}
stop_servers() {
    local srv
    for srv in "${!PID[@]}"; do
        bench_stop "${PID[$srv]}" TERM
        unset "PID[$srv]"
    done
}
start_servers

RES=$TMP/results.tsv
: >"$RES"
record() { bench_record "$RES" "$@"; }

# wrk run: prints "requests req/s errors"
run_wrk() { # port extra-args...
    local port=$1
    shift
    bench_wrk "$TMP/wrk.out" "http://127.0.0.1:$port/" "$SECS" "$CONNS" "$@"
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

# the heading of the per-round lines one_load prints
round_heading() {
    printf '\n%-9s %-8s %5s %11s %12s %13s %7s %12s\n' load server round requests "per second" \
        "cpu us/unit" errors "wakeups/unit"
}
round_heading
one_load() { # load server round
    local load=$1 srv=$2 round=$3 port pids c0 c1 w0 w1 n rate err cpu wake
    port=${PORT[$srv]}
    pids=${PIDS[$srv]}
    # shellcheck disable=SC2086
    w0=$(bench_wakeups $pids)
    # shellcheck disable=SC2086
    c0=$(bench_cpu_ticks $pids)
    case $load in
    ka) read -r n rate err < <(run_wrk "$port") ;;
    churn | churn-1m) read -r n rate err < <(run_wrk "$port" -H "Connection: close") ;;
    ka-ps) read -r n rate _ err < <(run_ps "$port") ;;
    churn-ps) read -r n _ rate err < <(run_ps "$port" --close) ;;
    esac
    # shellcheck disable=SC2086
    c1=$(bench_cpu_ticks $pids)
    bench_alive_or_exit "${PID[$srv]}" "$srv died during $load round $round" \
        "$TMP/$srv/err.log" "$TMP/$srv/error.log"
    # shellcheck disable=SC2086
    w1=$(bench_wakeups $pids)
    cpu=$(python3 -c "print('%.2f' % (($c1 - $c0) * 1e6 / $CLK_TCK / $n) if $n > 0 else 'nan')")
    wake=$(python3 -c "print('%.3f' % (($w1 - $w0) / $n) if $n > 0 else 'nan')")
    printf '%-9s %-8s %5d %11d %12.0f %13s %7d %12s\n' "$load" "$srv" "$round" "${n:-0}" "${rate:-0}" \
        "$cpu" "${err:-0}" "$wake"
    [ "${n:-0}" -gt 0 ] 2>/dev/null || rate=nan # nothing served: no figure
    record "$load.rate" "$srv" "$round" "${rate:-nan}"
    record "$load.cpu" "$srv" "$round" "$cpu"
    record "$load.wake" "$srv" "$round" "$wake"
}

# the order of the servers in round R: rotated by R
order_of() { # round
    local -a s
    read -r -a s <<<"$SERVERS"
    local n=${#s[@]} i out=""
    for i in $(seq 0 $((n - 1))); do out="$out ${s[$(((i + $1) % n))]}"; done
    echo "$out"
}
run_rounds() { # loads...
    local r load srv
    for r in $(seq "$ROUNDS"); do
        for load in "$@"; do
            for srv in $(order_of "$r"); do
                one_load "$load" "$srv" "$r"
                sleep 1 # let TIME_WAIT and backlog settle between runs
            done
        done
    done
}

LOADS="ka churn"
[ "$DO_STRESS" = 1 ] && LOADS="ka churn ka-ps churn-ps"
# shellcheck disable=SC2086
run_rounds $LOADS

# ---- churn with a big deny list -----------------------------------------------------------
if [ "$DO_LIST" = 1 ]; then
    stop_servers
    echo
    bench_log "generating the deny list ($LIST4 IPv4 + $LIST6 IPv6 prefixes)"
    python3 "$BENCH_DIR/gen_prefixes.py" "$TMP/list" "$LIST4" "$LIST6" --deny 127.0.9.0/24 >&2
    t0=$(date +%s.%N)
    start_servers "$TMP/list"
    echo "  servers up with the list after $(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))") s" \
        "(started one after the other)"
    for srv in $SERVERS; do
        # shellcheck disable=SC2086
        echo "  $srv RSS with the list: $(bench_rss_kb ${PIDS[$srv]}) kB"
    done
    round_heading
    run_rounds churn-1m
fi

# ---- idle connections -------------------------------------------------------------------
active_of() { # server -> established connections on its port, as the kernel counts them
    ss -Htn state established "( sport = :${PORT[$1]} )" 2>/dev/null | wc -l
}

wait_active() { # server ge|le target
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
    printf '\n%-9s %-8s %9s %11s %11s %14s\n' idle server conns "rss before" "rss after" \
        "bytes/conn"
    for mode in none request; do
        # fresh processes: memory kept from earlier runs (pc-http's
        # connection table never shrinks) must not hide the growth
        stop_servers
        start_servers >/dev/null
        for srv in $SERVERS; do # warm up: threads, buffers, first table chunk
            timeout 10 wrk -t1 -c10 -d1s "http://127.0.0.1:${PORT[$srv]}/" >/dev/null 2>&1
        done
        for srv in $SERVERS; do
            pids=${PIDS[$srv]}
            count=$IDLE
            [ "$srv" = haproxy ] && [ "$count" -gt $((HAP_MAXCONN - 500)) ] && count=$((HAP_MAXCONN - 500))
            wait_active "$srv" le 0 || true
            sleep 1
            # shellcheck disable=SC2086
            before=$(bench_rss_kb $pids)
            if ! bench_idle_open "${PORT[$srv]}" "$count" "$IDLE_PROCS" "$mode" "$TMP"; then
                echo "  idle $mode $srv: could not open $count connections" >&2
                bench_idle_close
                continue
            fi
            wait_active "$srv" ge "$count" || echo "  idle $mode $srv: server sees $(active_of "$srv")" >&2
            sleep 1
            # shellcheck disable=SC2086
            after=$(bench_rss_kb $pids)
            bench_idle_close
            per=$(python3 -c "print('%.0f' % (($after - $before) * 1024 / $count))")
            name=idle
            [ "$mode" = request ] && name=idle-ka
            printf '%-9s %-8s %9d %9d kB %9d kB %14s\n' "$name" "$srv" "$count" "$before" "$after" "$per"
            record "$name.bytes" "$srv" 1 "$per"
            record "$name.rss_kb" "$srv" 1 "$after"
        done
    done
fi

# ---- summary ------------------------------------------------------------------------------
echo
echo "load avg at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
cat >"$TMP/table" <<'EOF'
# key|label|higher is better|targets pc/PEER (issue 14), by peer name
ka.rate|keep-alive req/s (wrk)|1|-
ka.cpu|CPU us/request (wrk keep-alive)|0|nginx=0.75,haproxy=0.75
churn.rate|churn conn/s (wrk Connection: close)|1|-
churn.cpu|CPU us/connection (wrk churn)|0|-
churn-1m.rate|churn conn/s, 1M-prefix deny list|1|nginx=1.2,haproxy=1.0
churn-1m.cpu|CPU us/connection, 1M-prefix list|0|nginx=0.85
ka.wake|wake-ups/request (wrk keep-alive)|0|-
churn.wake|wake-ups/connection (wrk churn)|0|-
churn-1m.wake|wake-ups/connection, 1M-prefix list|0|-
ka-ps.rate|keep-alive req/s (pc-stress)|1|-
churn-ps.rate|churn conn/s (pc-stress --close)|1|-
idle.bytes|RSS bytes per idle conn (no request)|0|nginx=0.5
idle-ka.bytes|RSS bytes per idle conn (1 request)|0|nginx=0.5
EOF
PEERS=
for srv in nginx nginxd haproxy; do
    case " $SERVERS " in *" $srv "*) PEERS=${PEERS:+$PEERS,}$srv ;; esac
done
if [ -n "$PEERS" ]; then
    python3 "$BENCH_DIR/summary.py" "$RES" "$PEERS" "$TMP/table"
else
    echo "no peer in SERVERS ($SERVERS): no ratios to print"
fi
exit 0
