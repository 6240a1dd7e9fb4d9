# SPDX-License-Identifier: MIT
# Shared helpers for the benchmark scripts (sourced, bash).
# shellcheck shell=bash
#
# Process control is by PID only: every helper acts on processes this script
# started. Nothing here fails the caller on slow figures; benchmarks measure.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # for the scripts that source this file
CLK_TCK=$(getconf CLK_TCK)

bench_log() { printf '==> %s\n' "$*" >&2; }

# Install missing Debian packages if we can (root or sudo), quietly.
# bench_need_cmd CMD PKG...
bench_need_cmd() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    bench_log "installing $* (for $cmd)"
    $sudo apt-get update -qq >/dev/null 2>&1
    local p
    for p in "$@"; do
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" \
            >/dev/null 2>&1 && break
    done
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null 2>&1
}

# A free TCP port on 127.0.0.1 (bound and released: racy but good enough).
bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait until something accepts on 127.0.0.1:PORT (at most ~5 s).
bench_wait_port() {
    local port=$1 i
    for i in $(seq 50); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2).close()" \
            2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Exit 1, saying "WHAT: " and the last lines of the LOG files, unless PID is
# alive: a dead server's /proc entries are gone, so its CPU would read as 0
# and its counts and ratios would be wrong.
# bench_alive_or_exit PID WHAT LOG...
bench_alive_or_exit() {
    local pid=$1 what=$2
    shift 2
    kill -0 "$pid" 2>/dev/null && return 0
    echo "$what: $(cat "$@" 2>/dev/null | tail -3)" >&2
    exit 1
}

# Who holds the listening socket on PORT, as ss says ("users:((...))"), or
# "none". bench_port_holder PORT
bench_port_holder() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' || echo none
}

# Is the listening socket on 127.0.0.1:PORT held by one of the PIDs given?
# (Ports come from bench_free_port, which can race with another process.)
# Returns 0 too when ss (iproute2) is missing: the check is then skipped.
# bench_port_owned PORT PID...
bench_port_owned() {
    local port=$1 line p
    shift
    command -v ss >/dev/null 2>&1 || return 0
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null)
    for p in "$@"; do
        case $line in *"pid=$p,"*) return 0 ;; esac
    done
    return 1
}

# PIDs of the children of PID (from /proc, no procps needed).
bench_children() {
    local parent=$1 f
    for f in /proc/[0-9]*/stat; do
        # field 4 (ppid), counted after the ")" closing comm
        sed -n 's/.*) [A-Za-z] \([0-9]*\) .*/\1/p' "$f" 2>/dev/null | grep -qx "$parent" &&
            basename "$(dirname "$f")"
    done
}

# utime+stime in clock ticks, summed over the PIDs given.
bench_cpu_ticks() {
    local sum=0 p t
    for p in "$@"; do
        t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# Busy CPU time of the whole machine in clock ticks, a counter to take
# differences of: the CPUs' time since boot minus their idle and iowait time.
# Unlike bench_cpu_ticks it counts the kernel's softirq work that no process
# is charged for, and the clients as well. Not the sum of /proc/stat's busy
# fields: those are sampled at the tick and miss much of a bursty load (a
# 500/s handshake flood: 46 ticks against 84 from idle time and 58 charged
# to the server's own processes), while the idle time is kept exactly.
bench_machine_ticks() {
    awk -v hz="$CLK_TCK" 'FNR == NR { up = $1; next }
        /^cpu[0-9]/ { n++; idle += $5 + $6 }
        END { printf "%.0f\n", up * hz * n - idle }' /proc/uptime /proc/stat
}

# Voluntary context switches (a thread slept and was woken: a wake-up),
# summed over every thread of the PIDs given.
bench_wakeups() {
    local p
    for p in "$@"; do
        cat /proc/"$p"/task/*/status 2>/dev/null
    done | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}

# VmRSS in kB, summed over the PIDs given.
bench_rss_kb() {
    local sum=0 p r
    for p in "$@"; do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        sum=$((sum + ${r:-0}))
    done
    echo "$sum"
}

# Stop a process we started: SIGTERM (or the signal given), wait up to 10 s,
# then SIGKILL. bench_stop PID [SIGNAL]
bench_stop() {
    local pid=$1 sig=${2:-TERM} i
    [ -z "$pid" ] && return 0
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# Write an nginx config equivalent to pc-http's "/" route into DIR/nginx.conf.
# bench_nginx_conf DIR PORT WORKERS
bench_nginx_conf() {
    local dir=$1 port=$2 workers=$3
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/lib.sh: loopback only, same work as pc-http's "/"
worker_processes $workers;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 20000;
}
http {
    access_log off;
    # no limit on requests per keep-alive connection (pc-http has none)
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location = /nginx_status {
            stub_status;
        }
    }
}
EOF
}

# Open server-side-visible connections: COUNT idle connections to PORT held by
# PROCS python processes (each under the file limit). With "request" each
# connection first completes one GET / (a keep-alive connection between
# requests); without, it never sends a byte. Sets IDLE_PIDS. Returns when all
# report ready (or 60 s).
# bench_idle_open PORT COUNT PROCS [request] OUTDIR
bench_idle_open() {
    local port=$1 count=$2 procs=$3 mode=$4 out=$5 i per
    per=$(((count + procs - 1) / procs))
    IDLE_PIDS=()
    for i in $(seq "$procs"); do
        local n=$per
        [ $((i * per)) -gt "$count" ] && n=$((count - (i - 1) * per))
        python3 "$BENCH_DIR/idle_conns.py" 127.0.0.1 "$port" "$n" "$mode" >"$out/idle.$i" 2>&1 &
        IDLE_PIDS+=($!)
    done
    local t
    for t in $(seq 600); do
        local ready=0
        for i in $(seq "$procs"); do grep -q '^ready' "$out/idle.$i" 2>/dev/null && ready=$((ready + 1)); done
        [ "$ready" -eq "$procs" ] && return 0
        for i in $(seq "$procs"); do
            grep -q '^error' "$out/idle.$i" 2>/dev/null && { cat "$out/idle.$i" >&2; return 1; }
        done
        sleep 0.1
    done
    return 1
}

bench_idle_close() {
    local p
    for p in "${IDLE_PIDS[@]}"; do bench_stop "$p" TERM; done
    IDLE_PIDS=()
}

# One measurement for bench/summary.py: bench_record FILE METRIC SERVER ROUND VALUE
# LAUNCH: the prefix that starts a server in the session asked by SESSION
# (default $1): "shared" (the script's, no prefix) or "own" (setsid; this
# script is not a group leader, having no job control, so setsid execs and
# the PID stays the server's). Exits 2 on another value.
# shellcheck disable=SC2034 # LAUNCH is the caller's
bench_session_launch() {
    SESSION=${SESSION:-$1}
    case $SESSION in
    shared) LAUNCH=() ;;
    own) LAUNCH=(setsid) ;;
    *) echo "SESSION must be shared or own" >&2; exit 2 ;;
    esac
}
bench_record() { printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$5" >>"$1"; }

# One wrk run: bench_wrk OUTFILE URL SECS CONNS [wrk args...]; prints
# "requests req/s errors" (errors: socket errors and non-2xx answers). wrk's
# own output stays in OUTFILE. WRK_THREADS: wrk's threads (default 2; wrk
# wants no more than CONNS).
bench_wrk() {
    local out=$1 url=$2 secs=$3 conns=$4
    shift 4
    timeout $((secs + 15)) wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${secs}s" "$@" "$url" >"$out" 2>&1
    awk '/requests in/ {n=$1} /Requests\/sec/ {r=$2}
         /Socket errors/ {gsub(",", ""); e+=$4+$6+$8+$10} /Non-2xx/ {e+=$NF}
         END {printf "%d %.1f %d\n", n, r, e}' "$out"
}
