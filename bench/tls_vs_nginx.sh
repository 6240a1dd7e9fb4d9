#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pc-http over TLS against nginx over TLS, on the same machine, in one run.
#
#   bench/tls_vs_nginx.sh BUILD_DIR [--rounds N] [--duration S] [--threads N]
#                         [--conns N] [--clients N] [--flood-rate N]
#
# The script makes one ECDSA P-256 certificate (a throw-away CA and a server
# certificate for localhost/127.0.0.1, `openssl req`) and serves "/" with it
# from both servers: BUILD_DIR/bin/pc-http --tls-cert/--tls-key --threads N
# --rules (deny 127.0.9.0/24), and nginx (generated config in a temp dir:
# worker_processes N, listen ssl, ssl_protocols TLSv1.2 TLSv1.3 like pc-http's
# default minimum, session cache and tickets on, `deny 127.0.9.0/24` in the
# location, return 200 "Hello, World!"). Every client offers TLS 1.3 and
# both servers take it (checked with s_client and printed). For each round
# (default 3, each load --duration seconds, default 5, at most 30), in
# alternating order:
#   ka        wrk -t2 -cCONNS https:// keep-alive      -> req/s, server CPU/request
#   full      --clients (default 4) parallel `openssl s_time -new -www /`
#                                                     -> handshakes/s, CPU/handshake
#   resumed   the same with -reuse (session resumption) -> handshakes/s, CPU/handshake
# then, per server, a TLS handshake flood from the denied sources
# 127.0.9.1-50: pc-connect-flood --send CLIENTHELLO (a TLS 1.3 ClientHello made
# by Python's ssl module; each attempt connects, sends it and waits up to 500
# ms for the answer) at --flood-rate attempts/s (default 500: low enough that
# nginx answers every one, so its figure is the whole cost), first alone
# (server CPU per denied attempt, the server's idle CPU over as long
# subtracted), then while wrk keeps the allowed clients busy (their req/s
# under the flood against the mean of a run before and one after). nginx
# judges `deny` only after the handshake and the request: the ClientHello
# costs it its half of a full handshake. pc-http judges on the accept thread
# before any TLS byte is read (the connection is reset).
#
# Server CPU = utime+stime from /proc/PID/stat (nginx: master + workers).
# The clients share the machine's CPUs, so rates are a property of the pair;
# CPU per unit is the server's own. Machine CPU = the busy time of every CPU
# (bench_machine_ticks) over the same span, per unit: clients included, and the
# kernel's softirq work (TCP handshakes, resets, the kernel filter's drops)
# that no process is charged for. For the flood, both have their idle
# baseline subtracted.
#
# Environment: PC_HTTP_ARGS (extra pc-http flags, e.g. "--kernel-filter off"
# to have the accept thread judge instead of the kernel), NGINX.
# It measures and never judges: the exit status is 0 whatever the figures.
set -u

usage() {
    sed -n '3,44p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
if [ $# -lt 1 ] || [ ! -d "$1" ]; then usage; fi
BUILD=$(cd "$1" && pwd)
shift
ROUNDS=3
SECS=5
THREADS=2
CONNS=50
CLIENTS=4
FLOOD_RATE=500
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) SECS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --flood-rate) FLOOD_RATE=$2; shift ;;
    *) usage ;;
    esac
    shift
done
[ "$SECS" -gt 30 ] 2>/dev/null && SECS=30
[ "$SECS" -ge 1 ] 2>/dev/null || SECS=5
[ "$ROUNDS" -ge 1 ] 2>/dev/null || ROUNDS=3
[ "$CLIENTS" -ge 1 ] 2>/dev/null && [ "$CLIENTS" -le 16 ] || CLIENTS=4
[ "$FLOOD_RATE" -ge 1 ] 2>/dev/null && [ "$FLOOD_RATE" -le 20000 ] || FLOOD_RATE=500

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

PCHTTP=$BUILD/bin/pc-http
FLOOD=$BUILD/bin/pc-connect-flood
[ -x "$PCHTTP" ] || { echo "no $PCHTTP (build the pc-http target)" >&2; exit 2; }
[ -x "$FLOOD" ] || { echo "no $FLOOD (build pc-connect-flood)" >&2; exit 2; }
PC_TLS=1
if ! "$PCHTTP" --help 2>&1 | grep -q -- --tls-cert; then
    bench_log "this pc-http has no --tls-cert: nginx alone is measured"
    PC_TLS=0
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then
    bench_need_cmd nginx nginx-light nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
command -v wrk >/dev/null || bench_need_cmd wrk wrk
command -v openssl >/dev/null || bench_need_cmd openssl openssl
[ -x "$NGINX" ] || { echo "nginx not available" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not available" >&2; exit 2; }
command -v openssl >/dev/null || { echo "openssl not available" >&2; exit 2; }

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d /tmp/pc-tlsbench.XXXXXX)
PC_PID=
NGX_PID=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    bench_stop "$PC_PID" TERM
    bench_stop "$NGX_PID" TERM
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- certificate, rules, ClientHello ----------------------------------------------------
C=$TMP/tls
mkdir -p "$C"
# shellcheck disable=SC2015 # the || runs when any step failed, as meant
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=portcullis bench CA" -keyout "$C/ca.key" -out "$C/ca.pem" 2>/dev/null &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$C/server.key" -out "$C/server.csr" 2>/dev/null &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$C/ext" &&
    openssl x509 -req -in "$C/server.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
        -days 30 -extfile "$C/ext" -out "$C/server.crt" 2>/dev/null &&
    cat "$C/server.crt" "$C/ca.pem" >"$C/server.pem" ||
    { echo "openssl req failed" >&2; exit 1; }
printf 'deny 127.0.9.0/24\n' >"$TMP/rules.txt"
python3 - "$TMP/hello.bin" <<'EOF' || { echo "cannot make a ClientHello" >&2; exit 1; }
import ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
s = ctx.wrap_bio(i, o, server_hostname="localhost")
try:
    s.do_handshake()
except ssl.SSLWantReadError:
    pass
open(sys.argv[1], "wb").write(o.read())
EOF

# ---- machine --------------------------------------------------------------------------
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "nginx: $("$NGINX" -V 2>&1 | sed -n 's/.*version: //p;s/^built with //p' | paste -sd' ')," \
    "openssl: $(openssl version), wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
echo "pc-http: $PCHTTP ${PC_HTTP_ARGS:-}"
echo "rounds $ROUNDS x ${SECS}s, $THREADS workers each, $CONNS wrk connections," \
    "$CLIENTS s_time clients, flood $FLOOD_RATE/s, load avg $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- servers --------------------------------------------------------------------------
PC_PORT=$(bench_free_port)
NGX_PORT=$(bench_free_port)
while [ "$NGX_PORT" = "$PC_PORT" ]; do NGX_PORT=$(bench_free_port); done
SERVERS=nginx
if [ "$PC_TLS" = 1 ]; then
    # shellcheck disable=SC2086 # PC_HTTP_ARGS is a list of flags
    "$PCHTTP" --listen "127.0.0.1:$PC_PORT" --threads "$THREADS" --max-conns 15000 \
        --rules "$TMP/rules.txt" --tls-cert "$C/server.pem" --tls-key "$C/server.key" \
        ${PC_HTTP_ARGS:-} >"$TMP/pc.out" 2>"$TMP/pc.err" &
    PC_PID=$!
    SERVERS="pc nginx"
fi
mkdir -p "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<EOF
# generated by bench/tls_vs_nginx.sh: loopback only
worker_processes $THREADS;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log crit;
events {
    worker_connections 15000;
}
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    ssl_certificate $C/server.pem;
    ssl_certificate_key $C/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$NGX_PORT ssl;
        location = / {
            deny 127.0.9.0/24;
            allow all;
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.out" 2>&1 &
NGX_PID=$!
if [ "$PC_TLS" = 1 ] && ! bench_wait_port "$PC_PORT"; then
    echo "pc-http did not start: $(cat "$TMP/pc.err")" >&2
    exit 1
fi
if ! bench_wait_port "$NGX_PORT"; then
    echo "nginx did not start: $(cat "$TMP/nginx.out" "$TMP/nginx/error.log" 2>/dev/null)" >&2
    exit 1
fi
sleep 0.3
NGX_PIDS="$NGX_PID $(bench_children "$NGX_PID" | tr '\n' ' ')"
port_of() { [ "$1" = pc ] && echo "$PC_PORT" || echo "$NGX_PORT"; }
pids_of() { [ "$1" = pc ] && echo "$PC_PID" || echo "$NGX_PIDS"; }
# Exit 1 unless SRV's main process is alive (bench_alive_or_exit: a denied
# attempt would cost nothing, and its port refuse every client).
# alive_or_exit SRV WHAT
alive_or_exit() {
    if [ "$1" = pc ]; then
        bench_alive_or_exit "$PC_PID" "pc died during $2" "$TMP/pc.err"
    else
        bench_alive_or_exit "$NGX_PID" "nginx died during $2" "$TMP/nginx.out" "$TMP/nginx/error.log"
    fi
}
# the listener must be the server's own, not another process that took the
# port bench_free_port gave (nginx retries its bind for seconds)
for srv in $SERVERS; do
    alive_or_exit "$srv" start-up
    # shellcheck disable=SC2046 # a list of PIDs
    bench_port_owned "$(port_of "$srv")" $(pids_of "$srv") || {
        echo "$srv did not start: 127.0.0.1:$(port_of "$srv") is held by" \
            "$(bench_port_holder "$(port_of "$srv")")" >&2
        exit 1
    }
done

[ "$PC_TLS" = 1 ] && echo "pc-http said: $(cat "$TMP/pc.out" "$TMP/pc.err" | head -4 | paste -sd';')"
for srv in $SERVERS; do
    hs=$(openssl s_client -connect "127.0.0.1:$(port_of "$srv")" -servername localhost \
        -CAfile "$C/ca.pem" -verify_return_error </dev/null 2>/dev/null |
        sed -n 's/^New, \(.*\)$/\1/p;s/^ *Server Temp Key: \(.*\)$/\1/p;s/^Verify return code: \(.*\)$/verify \1/p' |
        paste -sd' ')
    body=$(curl -s --cacert "$C/ca.pem" "https://localhost:$(port_of "$srv")/" 2>&1)
    echo "$srv: port $(port_of "$srv"), pids $(pids_of "$srv"): $hs; curl: $body"
done

RES=$TMP/results.tsv
: >"$RES"
record() { bench_record "$RES" "$@"; }
now_s() { date +%s.%N; }

# wrk over TLS: prints "requests req/s errors"
run_wrk() { # port [secs]
    bench_wrk "$TMP/wrk.out" "https://127.0.0.1:$1/" "${2:-$SECS}" "$CONNS"
}

# CLIENTS parallel s_time runs: prints "handshakes handshakes/s resumed"
run_stime() { # port -new|-reuse
    local port=$1 mode=$2 i t0 t1 n r
    t0=$(now_s)
    for i in $(seq "$CLIENTS"); do
        timeout $((SECS + 20)) openssl s_time -connect "127.0.0.1:$port" "$mode" -www / \
            -time "$SECS" >"$TMP/stime.$i" 2>&1 &
    done
    wait
    t1=$(now_s)
    n=0
    r=0
    for i in $(seq "$CLIENTS"); do
        n=$((n + $(awk '/connections in .* real seconds/ {print $1; exit}' "$TMP/stime.$i" | grep . || echo 0)))
        # s_time -reuse prints one 'r' per resumed connection, on lines of their own
        r=$((r + $(grep -E '^[*r]+$' "$TMP/stime.$i" | tr -cd 'r' | wc -c)))
    done
    python3 -c "print($n, '%.1f' % ($n / ($t1 - $t0)), $r)"
}

cpu_per() { # ticks units -> microseconds per unit
    python3 -c "print('%.2f' % ($1 * 1e6 / $CLK_TCK / $2) if $2 > 0 else 'nan')"
}

printf '\n%-8s %-6s %5s %11s %12s %13s %13s %s\n' load server round count "per second" "cpu us/unit" \
    "machine us" note
one_load() { # load server round
    local load=$1 srv=$2 round=$3 port pids c0 c1 m0 m1 n rate err cpu mcpu note=""
    port=$(port_of "$srv")
    pids=$(pids_of "$srv")
    # shellcheck disable=SC2086
    c0=$(bench_cpu_ticks $pids)
    m0=$(bench_machine_ticks)
    case $load in
    ka)
        read -r n rate err < <(run_wrk "$port")
        note="errors $err"
        ;;
    full)
        read -r n rate err < <(run_stime "$port" -new)
        note="resumed $err"
        ;;
    resumed)
        read -r n rate err < <(run_stime "$port" -reuse)
        note="resumed $err"
        ;;
    esac
    m1=$(bench_machine_ticks)
    # shellcheck disable=SC2086
    c1=$(bench_cpu_ticks $pids)
    alive_or_exit "$srv" "$load round $round"
    cpu=$(cpu_per $((c1 - c0)) "${n:-0}")
    mcpu=$(cpu_per $((m1 - m0)) "${n:-0}")
    printf '%-8s %-6s %5d %11d %12.0f %13s %13s %s\n' "$load" "$srv" "$round" "${n:-0}" "${rate:-0}" \
        "$cpu" "$mcpu" "$note"
    [ "${n:-0}" -gt 0 ] 2>/dev/null || rate=nan # nothing served: no figure
    record "$load.rate" "$srv" "$round" "${rate:-nan}"
    record "$load.cpu" "$srv" "$round" "$cpu"
    record "$load.mcpu" "$srv" "$round" "$mcpu"
}

for r in $(seq "$ROUNDS"); do
    for load in ka full resumed; do
        if [ $((r % 2)) -eq 1 ]; then order=$SERVERS; else order=$(echo "$SERVERS" | awk '{for (i = NF; i; i--) printf "%s ", $i}'); fi
        for srv in $order; do
            one_load "$load" "$srv" "$r"
            sleep 1 # TIME_WAIT and backlog settle between runs
        done
    done
done

# ---- handshake flood from denied sources ------------------------------------------------------
printf '\n%-8s %-6s %9s %9s %9s %14s %12s %12s %12s %8s\n' flood server attempts answered hungup \
    "cpu us/attempt" "machine us" "req/s alone" "req/s flood" ratio >"$TMP/flood.table"
: >"$TMP/flood.raw"
for srv in $SERVERS; do
    port=$(port_of "$srv")
    pids=$(pids_of "$srv")
    # idle baseline over one phase
    # shellcheck disable=SC2086
    c0=$(bench_cpu_ticks $pids)
    m0=$(bench_machine_ticks)
    t0=$(now_s)
    sleep "$SECS"
    t1=$(now_s)
    # shellcheck disable=SC2086
    idle=$(($(bench_cpu_ticks $pids) - c0))
    midle=$(($(bench_machine_ticks) - m0))
    # the flood alone
    # shellcheck disable=SC2086
    c0=$(bench_cpu_ticks $pids)
    m0=$(bench_machine_ticks)
    t2=$(now_s)
    out=$("$FLOOD" 127.0.0.1 "$port" --sources 127.0.9.1-50 --rate "$FLOOD_RATE" --seconds "$SECS" \
        --hold 500 --send "$TMP/hello.bin")
    echo "  $srv, flood alone: $out" >>"$TMP/flood.raw"
    m1=$(bench_machine_ticks)
    t3=$(now_s)
    # shellcheck disable=SC2086
    c1=$(bench_cpu_ticks $pids)
    alive_or_exit "$srv" "the flood"
    att=$(sed -n 's/.*attempts=\([0-9]*\).*/\1/p' <<<"$out")
    ans=$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' <<<"$out")
    hup=$(sed -n 's/.*hungup=\([0-9]*\).*/\1/p' <<<"$out")
    t=$((c1 - c0 - idle))
    [ "$t" -lt 0 ] && t=0
    cpu=$(cpu_per "$t" "${att:-0}")
    # the machine's idle baseline, scaled to the flood's span (it runs a
    # little longer than SECS: the last attempts' 500 ms wait)
    t=$(python3 -c "print(max(0, round($m1 - $m0 - $midle * ($t3 - $t2) / ($t1 - $t0))))")
    mcpu=$(cpu_per "$t" "${att:-0}")
    sleep 1
    # allowed clients alone, under the flood, alone again
    read -r _ alone1 _ < <(run_wrk "$port")
    sleep 1
    "$FLOOD" 127.0.0.1 "$port" --sources 127.0.9.1-50 --rate "$FLOOD_RATE" --seconds $((SECS + 1)) \
        --hold 500 --send "$TMP/hello.bin" >"$TMP/flood2.out" &
    fpid=$!
    read -r _ under _ < <(run_wrk "$port")
    wait "$fpid"
    echo "  $srv, flood beside wrk: $(cat "$TMP/flood2.out")" >>"$TMP/flood.raw"
    sleep 1
    read -r _ alone2 _ < <(run_wrk "$port")
    alive_or_exit "$srv" "wrk beside the flood"
    alone=$(python3 -c "print(($alone1 + $alone2) / 2)")
    ratio=$(python3 -c "print('%.2f' % ($under / $alone) if $alone > 0 else 'nan')")
    printf '%-8s %-6s %9s %9s %9s %14s %12s %12.0f %12.0f %8s\n' flood "$srv" "${att:-0}" "${ans:-0}" \
        "${hup:-0}" "$cpu" "$mcpu" "$alone" "$under" "$ratio" >>"$TMP/flood.table"
    record flood.cpu "$srv" 1 "$cpu"
    record flood.mcpu "$srv" 1 "$mcpu"
    record flood.ka_ratio "$srv" 1 "$ratio"
    sleep 1
done

cat "$TMP/flood.table"
echo "pc-connect-flood said:"
cat "$TMP/flood.raw"

# ---- summary ------------------------------------------------------------------------------
echo
if [ "$PC_TLS" = 0 ]; then
    echo "(no ratios: pc-http was not measured)"
    exit 0
fi
cat >"$TMP/table" <<'EOF'
# key|label|higher is better|target pc/nginx (issue 12)
ka.rate|keep-alive HTTPS req/s (wrk)|1|-
ka.cpu|server CPU us/request (keep-alive)|0|1.0
ka.mcpu|machine CPU us/request (keep-alive)|0|-
full.rate|full handshakes/s (s_time -new)|1|1.0
full.cpu|server CPU us/full handshake|0|-
full.mcpu|machine CPU us/full handshake|0|-
resumed.rate|resumed handshakes/s (s_time -reuse)|1|-
resumed.cpu|server CPU us/resumed handshake|0|-
resumed.mcpu|machine CPU us/resumed handshake|0|-
flood.cpu|server CPU us/denied TLS attempt|0|0.02
flood.mcpu|machine CPU us/denied TLS attempt|0|-
flood.ka_ratio|allowed req/s under flood / without|1|-
EOF
python3 "$BENCH_DIR/summary.py" "$RES" nginx "$TMP/table"
exit 0
