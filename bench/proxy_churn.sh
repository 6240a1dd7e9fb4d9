#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Server CPU per connection under churn with the PROXY protocol on vs off,
# through the same client path: pc-stress --close against pc-http, once with
# pc-http trusting 127.0.0.1 (--proxy-protocol) and pc-stress sending a v2
# header on every connection (--proxy-v2), once without either. Each round
# runs both, the one that goes first alternating (off-on, on-off, ...) so a
# neighbour's load, rising or falling, hits both alike; the medians and
# their ratio are printed. Measures, never fails on a figure.
#
#   bench/proxy_churn.sh BUILD_DIR [--rounds N] [--seconds S] [--conns N]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
build=${1:?usage: proxy_churn.sh BUILD_DIR [--rounds N] [--seconds S] [--conns N]}
shift
rounds=5 secs=4 conns=50
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
bin="$build/bin"
tmp=$(mktemp -d)
srv=""
cleanup() {
    [ -n "$srv" ] && { bench_stop "$srv" || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
echo "allow 127.0.0.1" >"$tmp/trusted"

# one round: MODE (off|on) -> prints "conns errors us_per_conn". Runs in the
# main shell (not a subshell), so that the EXIT trap sees $srv and stops it.
round() {
    local mode=$1 port extra=() sx=()
    port=$(bench_free_port)
    [ "$mode" = on ] && extra=(--proxy-protocol "$tmp/trusted") && sx=(--proxy-v2)
    "$bin/pc-http" --listen "127.0.0.1:$port" --threads 1 "${extra[@]}" >"$tmp/srv.log" 2>&1 &
    srv=$!
    # answering, and the listener its own (not another process's on that port)
    if ! bench_wait_port "$port" || ! bench_port_owned "$port" "$srv"; then
        echo "pc-http did not start: $(tail -2 "$tmp/srv.log")" >&2
        exit 1
    fi
    local t0 t1 n
    t0=$(bench_cpu_ticks "$srv")
    if ! "$bin/pc-stress" "http://127.0.0.1:$port/" -c "$conns" -t 1 -d "$secs" --close --json \
        "${sx[@]}" >"$tmp/out.json" 2>"$tmp/stress.err"; then
        echo "pc-stress failed: $(head -2 "$tmp/stress.err")" >&2
        exit 1
    fi
    t1=$(bench_cpu_ticks "$srv")
    # a dead server's CPU reads as 0: the round's figure would be negative
    bench_alive_or_exit "$srv" "pc-http died during the $mode round" "$tmp/srv.log"
    bench_stop "$srv" || true
    srv=""
    n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests"], d["errors_total"])' "$tmp/out.json")
    python3 -c 'import sys; req,err=map(int,sys.argv[1].split()); t=int(sys.argv[2]); hz=int(sys.argv[3])
print(req, err, "%.2f" % (t * 1e6 / hz / max(req, 1)))' "$n" "$((t1 - t0))" "$CLK_TCK"
}

declare -a off on
printf '%-6s %-4s %10s %7s %12s\n' round mode requests errors "us/conn"
for r in $(seq "$rounds"); do
    order="off on"
    [ $((r % 2)) -eq 0 ] && order="on off"
    for mode in $order; do
        round "$mode" >"$tmp/round"
        read -r req err us <"$tmp/round"
        printf '%-6s %-4s %10s %7s %12s\n' "$r" "$mode" "$req" "$err" "$us"
        if [ "$mode" = off ]; then off+=("$us"); else on+=("$us"); fi
    done
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
mo, mn = statistics.median(off), statistics.median(on)
pairs = [b / a for a, b in zip(off, on)]
print("server CPU per connection (median): off %.2f us, on (PROXY v2) %.2f us, on/off %.3f"
      % (mo, mn, mn / mo))
print("on/off per round (each on beside the off of its round): %s; median %.3f"
      % (" ".join("%.3f" % r for r in pairs), statistics.median(pairs)))
PY
