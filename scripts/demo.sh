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
port=7000
cat <<MSG

pc-echo is starting on 127.0.0.1:$port. Try it from another terminal:
    printf 'hello\n' | nc -q1 127.0.0.1 $port
    python3 -c "import socket; s=socket.create_connection(('127.0.0.1',$port)); s.sendall(b'ping'); print(s.recv(4))"
Stop it with Ctrl-C (graceful: open connections get their bytes and a FIN).

MSG
exec "$b/bin/pc-echo" --listen "127.0.0.1:$port" "$@"
