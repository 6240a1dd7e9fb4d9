#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Set up this machine, build Release and run the sample server in the
# foreground (Ctrl-C stops it gracefully). Extra arguments go to the server.
# It also makes a throw-away certificate authority and a server certificate for
# 127.0.0.1/localhost (ECDSA P-256, openssl req) in build/release/demo-tls and
# prints how to serve and fetch HTTPS with them.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
cd "$PC_ROOT"
pc_base_pkgs
pc_need_pkgs openssl curl
b="$PC_ROOT/build/release"
cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DPC_BUILD_TESTS=OFF >/dev/null
cmake --build "$b" -j"$(pc_jobs)"
port=8080
tls_port=8443

# ---- a demo CA and a server certificate signed by it (kept across runs) -------------
tls="$b/demo-tls"
https_help="this build of pc-http has no TLS flags (--tls-cert): HTTPS is not available"
if ! pc_help_has "$b/bin/pc-http" --tls-cert; then
  : # https_help as set above
elif ! pc_demo_certs "$tls"; then
  https_help="the demo certificates could not be made in $tls (see above): HTTPS is not available"
else
  https_help=$(
    cat <<TLS
HTTPS with a demo CA made for you in $tls (ECDSA P-256; the server
certificate is for localhost, 127.0.0.1 and ::1). In another terminal:
    $b/bin/pc-http --listen 127.0.0.1:$tls_port --tls-cert $tls/server.pem --tls-key $tls/server.key
then:
    curl --cacert $tls/ca.pem https://127.0.0.1:$tls_port/
    curl --cacert $tls/ca.pem --http1.1 -v https://localhost:$tls_port/ 2>&1 | grep -i 'ALPN\\|SSL connection'
    openssl s_client -connect 127.0.0.1:$tls_port -CAfile $tls/ca.pem -showcerts </dev/null
    $b/bin/pc-stress https://127.0.0.1:$tls_port/ --cacert $tls/ca.pem -c 20 -d 2 --close --tls-resume
TLS
  )
fi

cat <<MSG

pc-http is starting on 127.0.0.1:$port with the rules in samples/http/rules.example
(everything denied but loopback; 127.0.0.66 denied). Try it from another terminal:
    curl -i http://127.0.0.1:$port/
    curl http://127.0.0.1:$port/metrics            # stats, per-step rejects, top rule hits
    curl --interface 127.0.0.66 --connect-timeout 3 http://127.0.0.1:$port/   # denied: no SYN-ACK with the kernel filter (root), else a reset
    $b/bin/pc-stress http://127.0.0.1:$port/ -c 50 -d 2
Edit the rules file and send SIGHUP to reload it. Ctrl-C stops it gracefully.

$https_help

MSG
exec "$b/bin/pc-http" --listen "127.0.0.1:$port" --rules "$PC_ROOT/samples/http/rules.example" "$@"
