#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What a denied client costs: pc-http with the kernel filter, pc-http deciding
# after the handshake, HAProxy and nginx, side by side in one run (Linux, root).
#
#   bench/kfilter_flood.sh BUILD_DIR [--duration S] [--threads N] [--rate N]
#                          [--conns N] [--big N4] [--big6 N6] [--no-big] [--no-hping]
#
# Two deny lists: "small" (127.0.9.0/24 and 127.0.0.2) and "big" (the same
# plus N4 random IPv4 and N6 random IPv6 prefixes, default 1000000 + 100000,
# bench/gen_prefixes.py). Each server loads the list its own way:
#   pc-kernel  pc-http --rules LIST --kernel-filter auto  (eBPF, or cBPF if it fits)
#   pc-cbpf    pc-http --rules LIST --kernel-filter cbpf  (small list only: the
#              big one does not fit a classic program)
#   pc-post    pc-http --rules LIST --kernel-filter off   (verdict after accept4, reset)
#   haproxy    acl bad src -f LIST + tcp-request connection reject if bad,
#              http-request return 200 "Hello, World!", nbthread = --threads
#   nginx      small: deny lines; big: geo $bad + "if ($bad) { return 444; }"
#              (nginx's http module judges only once a request was read)
# For each server and list, each phase --duration seconds (default 5, at most 30):
#   base    wrk -t1 -c CONNS keep-alive from 127.0.0.1 (allowed)       -> req/s
#   flood   pc-connect-flood from denied 127.0.9.1-50 at --rate/s alone
#           (full connect attempts, abandoned after 50 ms unanswered)   -> server CPU
#                                                                          per attempt
#   both    wrk and the connect flood together                         -> req/s under flood
#   syn     wrk and an hping3 SYN flood spoofing denied 127.0.9.7 at --rate/s
#           (root; skipped with --no-hping)                            -> req/s under flood
#   base2   wrk alone again                                            -> req/s
# and prints, per row: req/s without flood (the mean of base and base2: on a
# shared machine the two bracket the drift) and under each flood (ratio to
# that mean; base and base2 apart show the noise), server
# CPU per denied attempt (utime+stime of the server's processes over the
# flood phase, minus its idle baseline, divided by the attempts), machine CPU
# per attempt (all CPUs, busy time from /proc/stat: includes the flooder and the
# kernel's work on both ends of loopback, so it is an upper bound), and
# what the denied clients saw (handshakes completed vs SYNs unanswered).
#
# Environment: PC_HTTP_ARGS (extra pc-http flags), NGINX, HAPROXY, KINDS (the
# servers to run, default "pc-kernel pc-cbpf pc-post haproxy nginx").
# It measures and never judges: exit 0 whatever the figures.
set -u

usage() {
    sed -n '3,40p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
if [ $# -lt 1 ] || [ ! -d "$1" ]; then usage; fi
BUILD=$(cd "$1" && pwd)
shift
SECS=5
THREADS=2
RATE=5000
CONNS=50
BIG4=1000000
BIG6=100000
DO_BIG=1
DO_HPING=1
while [ $# -gt 0 ]; do
    case $1 in
    --duration) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --big) BIG4=$2; shift ;;
    --big6) BIG6=$2; shift ;;
    --no-big) DO_BIG=0 ;;
    --no-hping) DO_HPING=0 ;;
    *) usage ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30 # a bounded flood: at most 30 s a phase
[ "$SECS" -ge 1 ] 2>/dev/null || SECS=5

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

PCHTTP=$BUILD/bin/pc-http
FLOOD=$BUILD/bin/pc-connect-flood
[ -x "$PCHTTP" ] || { echo "no $PCHTTP (build pc-http)" >&2; exit 2; }
[ -x "$FLOOD" ] || { echo "no $FLOOD (build pc-connect-flood)" >&2; exit 2; }
command -v wrk >/dev/null || bench_need_cmd wrk wrk
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || { bench_need_cmd nginx nginx-light nginx; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
[ -x "$HAPROXY" ] || { bench_need_cmd haproxy haproxy; HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy); }
HPING=$(command -v hping3 || echo /usr/sbin/hping3)
if [ "$DO_HPING" = 1 ]; then
    [ -x "$HPING" ] || { bench_need_cmd hping3 hping3; HPING=$(command -v hping3 || echo /usr/sbin/hping3); }
    if [ "$(id -u)" -ne 0 ] || [ ! -x "$HPING" ]; then
        bench_log "hping3 SYN flood skipped (needs root and hping3)"
        DO_HPING=0
    fi
fi
[ "$(id -u)" -eq 0 ] || bench_log "not root: the kernel filter may fall back (pc-http says which tier)"

ulimit -n 20000 2>/dev/null
WORK=$(mktemp -d /tmp/pc-kflood.XXXXXX)
SERVER_PID=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    bench_stop "$SERVER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap; a trap on INT alone would resume the script

# ---- lists -----------------------------------------------------------------
python3 "$BENCH_DIR/gen_prefixes.py" "$WORK/small" 0 0 --deny 127.0.9.0/24 --deny 127.0.0.2 >/dev/null
LISTS="small"
if [ "$DO_BIG" = 1 ]; then
    bench_log "generating the big list ($BIG4 IPv4 + $BIG6 IPv6 prefixes)"
    python3 "$BENCH_DIR/gen_prefixes.py" "$WORK/big" "$BIG4" "$BIG6" --deny 127.0.9.0/24 \
        --deny 127.0.0.2 >/dev/null
    LISTS="small big"
fi

# ---- servers ----------------------------------------------------------------
# start_server KIND LIST PORT: sets SERVER_PID (and SERVER_PIDS for CPU sums)
start_server() {
    local kind=$1 list=$2 port=$3 dir=$WORK/$1-$2
    mkdir -p "$dir"
    case $kind in
    pc-kernel | pc-cbpf | pc-post)
        local kf=auto
        [ "$kind" = pc-post ] && kf=off
        [ "$kind" = pc-cbpf ] && kf=cbpf
        # shellcheck disable=SC2086 # PC_HTTP_ARGS is a list of flags
        "$PCHTTP" --listen "127.0.0.1:$port" --threads "$THREADS" --rules "$WORK/$list/rules.txt" \
            --kernel-filter "$kf" ${PC_HTTP_ARGS:-} >"$dir/out.log" 2>&1 &
        SERVER_PID=$!
        ;;
    haproxy)
        cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
frontend fe
    bind 127.0.0.1:$port
    acl bad src -f $WORK/$list/haproxy.lst
    tcp-request connection reject if bad
    http-request return status 200 content-type text/plain string "Hello, World!"
EOF
        "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/out.log" 2>&1 &
        SERVER_PID=$!
        ;;
    nginx)
        bench_nginx_conf "$dir" "$port" "$THREADS"
        if [ "$list" = small ]; then
            sed -i "s|location = / {|include $WORK/$list/nginx_deny.conf;\n        location = / {|" \
                "$dir/nginx.conf"
        else
            sed -i "s|^    server {|    geo \$bad { default 0; include $WORK/$list/nginx_geo.conf; }\n    server {\n        if (\$bad) { return 444; }|" \
                "$dir/nginx.conf"
        fi
        "$NGINX" -c "$dir/nginx.conf" -p "$dir" >"$dir/out.log" 2>&1 &
        SERVER_PID=$!
        ;;
    esac
    local i
    for i in $(seq 600); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" \
            2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    bench_log "$kind ($list) did not start:"
    tail -5 "$dir/out.log" >&2
    return 1
}

# shellcheck disable=SC2046 # one PID per word
server_pids() { echo "$SERVER_PID" $(bench_children "$SERVER_PID"); }
# CPU ticks of the server's processes ($pids: one PID per word)
# shellcheck disable=SC2086
server_cpu() { bench_cpu_ticks $pids; }

# Is the server still up after PHASE? A dead one's CPU reads as 0 and its
# closed port refuses the flood: its row would read as a free denial. If not,
# its row says so (with its last log line), and the caller moves on.
# server_alive PHASE
server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null && return 0
    ROWS+=("$(printf '%-9s %-5s died during %s: %s' "$kind" "$list" "$1" \
        "$(tail -1 "$WORK/$kind-$list/out.log" 2>/dev/null)")")
    bench_log "$kind ($list) died during $1"
    bench_stop "$SERVER_PID"
    SERVER_PID=""
    return 1
}

# wrk for SECS against PORT; prints req/s
run_wrk() {
    wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$1/" 2>/dev/null |
        awk '/^Requests\/sec/ {printf "%.0f", $2}'
}

# ---- run ---------------------------------------------------------------------
ROWS=()
for list in $LISTS; do
    for kind in ${KINDS:-pc-kernel pc-cbpf pc-post haproxy nginx}; do
        [ "$kind" = pc-cbpf ] && [ "$list" = big ] && continue
        port=$(bench_free_port)
        bench_log "$kind, $list list, port $port"
        start_server "$kind" "$list" "$port" || continue
        tier="-"
        case $kind in pc-*) tier=$(grep -o 'kernel filter: [a-z]*' "$WORK/$kind-$list/out.log" | head -1 | sed 's/kernel filter: //') ;; esac
        [ -n "$tier" ] || tier="?"
        pids=$(server_pids)
        # shellcheck disable=SC2086 # the listener must be the server's own, not
        # another process's on the port bench_free_port gave
        if ! bench_port_owned "$port" $pids; then
            ROWS+=("$(printf '%-9s %-5s port %s held by another process: %s' "$kind" "$list" "$port" \
                "$(bench_port_holder "$port")")")
            bench_stop "$SERVER_PID"
            SERVER_PID=""
            continue
        fi
        sleep 1
        # idle CPU of the server over one phase (timers, ...)
        c0=$(server_cpu)
        sleep "$SECS"
        idle=$(($(server_cpu) - c0))
        server_alive "the idle baseline" || continue

        base=$(run_wrk "$port")

        # the connect flood alone: server CPU per attempt
        c0=$(server_cpu)
        m0=$(bench_machine_ticks)
        fl=$("$FLOOD" 127.0.0.1 "$port" --sources 127.0.9.1-50 --rate "$RATE" --seconds "$SECS")
        m1=$(bench_machine_ticks)
        c1=$(server_cpu)
        server_alive "the flood" || continue
        att=$(sed -n 's/.*attempts=\([0-9]*\).*/\1/p' <<<"$fl")
        hs=$(echo "$fl" | awk '{for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]} print v["connected"] + v["reset"]}')
        ab=$(sed -n 's/.*abandoned=\([0-9]*\).*/\1/p' <<<"$fl")
        srv_us=$(awk -v t=$((c1 - c0 - idle)) -v a="$att" -v hz="$CLK_TCK" \
            'BEGIN { if (t < 0) t = 0; printf "%.2f", a ? t * 1e6 / hz / a : 0 }')
        mach_us=$(awk -v t=$((m1 - m0)) -v a="$att" -v hz="$CLK_TCK" \
            'BEGIN { printf "%.2f", a ? t * 1e6 / hz / a : 0 }')

        # wrk under the connect flood
        "$FLOOD" 127.0.0.1 "$port" --sources 127.0.9.1-50 --rate "$RATE" --seconds "$SECS" \
            >"$WORK/flood2.out" &
        fpid=$!
        both=$(run_wrk "$port")
        wait "$fpid"

        syn="-"
        if [ "$DO_HPING" = 1 ]; then
            count=$((RATE * SECS))
            gap=$((1000000 / RATE))
            timeout -s INT $((SECS + 2)) "$HPING" -q -S -p "$port" -i "u$gap" -c "$count" \
                -a 127.0.9.7 127.0.0.1 >"$WORK/hping.out" 2>&1 &
            hpid=$!
            syn=$(run_wrk "$port")
            wait "$hpid" 2>/dev/null
        fi
        base2=$(run_wrk "$port")
        server_alive "the wrk runs" || continue
        base_mean=$(awk -v a="$base" -v b="$base2" 'BEGIN {printf "%.0f", (a + b) / 2}')
        bench_stop "$SERVER_PID"
        SERVER_PID=""
        ROWS+=("$(printf '%-9s %-5s %-6s %15s %8s %6s %8s %6s %9s %9s %8s/%s' "$kind" "$list" "$tier" \
            "$base_mean ($base,$base2)" "$both" "$(awk -v a="$both" -v b="$base_mean" 'BEGIN {printf "%.2f", b ? a / b : 0}')" \
            "$syn" "$(awk -v a="$syn" -v b="$base_mean" 'BEGIN {if (a == "-") print "-"; else printf "%.2f", b ? a / b : 0}')" \
            "$srv_us" "$mach_us" "$hs" "$ab")")
    done
done

echo
echo "threads=$THREADS wrk -t1 -c$CONNS ${SECS}s; denied flood: $RATE attempts/s from 127.0.9.1-50"
printf '%-9s %-5s %-6s %15s %8s %6s %8s %6s %9s %9s %s\n' server list tier \
    "req/s (runs)" "+flood" ratio "+synfl" ratio "srv_us/a" "mach_us/a" "handshaken/unanswered"
for r in "${ROWS[@]}"; do echo "$r"; done
exit 0
