#!/usr/bin/env bash
# Set up this machine, build Release and run the sample server in the
# foreground (Ctrl-C stops it gracefully). Extra arguments go to the server.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PC_ROOT"
pc_base_pkgs
b="$PC_ROOT/build/release"
cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DPC_BUILD_TESTS=OFF >/dev/null
cmake --build "$b" -j"$(pc_jobs)"
port=8080
cat <<MSG

pc-http is starting on 127.0.0.1:$port with the rules in samples/http/rules.example
(everything denied but loopback; 127.0.0.66 denied). Try it from another terminal:
    curl -i http://127.0.0.1:$port/
    curl http://127.0.0.1:$port/metrics            # stats, per-step rejects, top rule hits
    curl --interface 127.0.0.66 http://127.0.0.1:$port/   # a denied source: reset
    $b/bin/pc-stress http://127.0.0.1:$port/ -c 50 -d 2
Edit the rules file and send SIGHUP to reload it. Ctrl-C stops it gracefully.

MSG
exec "$b/bin/pc-http" --listen "127.0.0.1:$port" --rules "$PC_ROOT/samples/http/rules.example" "$@"
