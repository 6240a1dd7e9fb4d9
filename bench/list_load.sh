#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Loading a big concatenated block list: portcullis against HAProxy and nginx,
# in one run, on the same file.
#
#   bench/list_load.sh BUILD_DIR [--lines N] [--runs R]
#
# Writes a deny list of N lines (default 1000000) with pc-filter-bench
# --list-file (FireHOL/Spamhaus DROP shapes, 5% of the entries repeated; see
# docs/filter.md), then times, R times each (default 3; the median is
# printed):
#   pc_lib     the library alone: builder + read + parse + fold + compile
#              (pc-filter-bench's list_load_ms, median of its 5 loads)
#   pc_echo    pc-echo --deny-list FILE from exec to its "listening on" line
#   haproxy    haproxy -c on a config with `tcp-request connection reject if
#              { src -f LIST }` (the list with the "; ..." comments cut, which
#              HAProxy's pattern files do not take)
#   nginx      nginx -t on a config with `geo $deny { include LIST; }` (the
#              list as "PREFIX 1;" lines; nginx warns on each duplicate)
# and prints the ratios peer / pc_echo (above 1: portcullis loads faster).
# Peers missing on the machine are skipped. It measures and never judges.
set -u

usage() {
    sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
if [ $# -lt 1 ] || [ ! -d "$1" ]; then usage; fi
BUILD=$(cd "$1" && pwd)
shift
LINES=1000000
RUNS=3
while [ $# -gt 0 ]; do
    case $1 in
    --lines) LINES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) usage ;;
    esac
done
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin
TMP=$(mktemp -d /tmp/pc-list-load.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

LIST=$TMP/big.txt
lib=$("$BUILD/bin/pc-filter-bench" --list-file "$LINES" --list-out "$LIST") || exit 1
echo "$lib"
pc_lib=$(sed -n 's/.* list_load_ms=\([0-9]*\) .*/\1/p' <<<"$lib")

# median of the R wall-clock times (ms) of a command
median_ms() {
    local t0 t1 all=()
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1
        t1=$(date +%s%N)
        all+=($(((t1 - t0) / 1000000)))
    done
    printf '%s\n' "${all[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}

# pc-echo: exec to "listening on" (then SIGTERM), timed from inside Python so
# that neither the interpreter's start nor pc-echo's shutdown is counted; the
# median of RUNS as median_ms takes it. Exits 1 if pc-echo never listens.
pc_echo=$(python3 - "$BUILD/bin/pc-echo" "$LIST" "$RUNS" <<'EOF'
import subprocess, sys, time
ms = []
for _ in range(int(sys.argv[3])):
    t0 = time.monotonic()
    p = subprocess.Popen([sys.argv[1], "--listen", "127.0.0.1:0", "--deny-list", sys.argv[2]],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = False
    for line in p.stdout:
        if line.startswith("listening on"):
            ready = True
            break
    t1 = time.monotonic()
    p.terminate()
    p.wait()
    if not ready:
        sys.exit("pc-echo --deny-list exited (status %s) without listening" % p.returncode)
    ms.append(int((t1 - t0) * 1000))
print(sorted(ms)[(len(ms) - 1) // 2])
EOF
) || exit 1

haproxy_ms=""
if command -v haproxy >/dev/null; then
    sed 's/[;#].*//; s/[[:space:]]*$//; /^$/d' "$LIST" >"$TMP/list.hap"
    cat >"$TMP/haproxy.cfg" <<EOF
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend f
    bind 127.0.0.1:1
    tcp-request connection reject if { src -f $TMP/list.hap }
    default_backend b
backend b
    server s 127.0.0.1:2
EOF
    if haproxy -c -f "$TMP/haproxy.cfg" >/dev/null 2>&1; then
        haproxy_ms=$(median_ms haproxy -c -f "$TMP/haproxy.cfg")
    else
        bench_log "haproxy -c refused the config; skipped"
    fi
fi

nginx_ms=""
if command -v nginx >/dev/null; then
    sed 's/[;#].*//; s/[[:space:]]*$//; /^$/d; s/$/ 1;/' "$LIST" >"$TMP/geo.conf"
    mkdir -p "$TMP/nginx/logs"
    cat >"$TMP/nginx.conf" <<EOF
pid $TMP/nginx/nginx.pid;
error_log stderr;
events { }
http {
    access_log off;
    geo \$deny { default 0; include $TMP/geo.conf; }
    server { listen 127.0.0.1:1; return 200; }
}
EOF
    if nginx -t -p "$TMP/nginx" -c "$TMP/nginx.conf" >/dev/null 2>&1; then
        nginx_ms=$(median_ms nginx -t -p "$TMP/nginx" -c "$TMP/nginx.conf")
    else
        bench_log "nginx -t refused the config; skipped"
    fi
fi

ratio() { [ -n "$1" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b ? b : 1) }'; }
echo "lines=$LINES pc_lib_ms=$pc_lib pc_echo_ms=$pc_echo haproxy_ms=${haproxy_ms:-na}" \
    "nginx_ms=${nginx_ms:-na} haproxy_over_pc=$(ratio "$haproxy_ms" "$pc_echo")" \
    "nginx_over_pc=$(ratio "$nginx_ms" "$pc_echo")"
exit 0
