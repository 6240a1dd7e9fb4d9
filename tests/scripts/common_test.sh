#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks of scripts/common.sh's helpers with stand-in commands (no package is
# installed, nothing needs root). Registered as the CTest test scripts.common.
#   pc_need_pkgs   apt-get install runs with DEBIAN_FRONTEND=noninteractive,
#                  also through sudo (which resets the environment), and
#                  apt-get update runs once for several calls
#   pc_demo_certs  a failing openssl step fails the call, even in a condition
#                  (where set -e stops nothing), and leaves no files; a good
#                  run makes a chain that verifies for localhost and
#                  127.0.0.1, a second run keeps it, a broken one is remade
#   pc_help_has    finds a flag in help written in many small writes (piped
#                  to grep -q under pipefail, the writer's SIGPIPE read as "no")
# Usage: tests/scripts/common_test.sh   (needs bash and openssl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
common="$here/../../scripts/common.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/pc-common-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "common_test: FAIL: $*" >&2; exit 1; }
real_openssl=$(command -v openssl) || fail "needs openssl"

# ---- stand-ins -------------------------------------------------------------
fake="$work/bin"
mkdir -p "$fake"
log="$work/apt.log"
cat >"$fake/dpkg-query" <<'SH'
#!/bin/sh
exit 1
SH
cat >"$fake/id" <<SH
#!/bin/sh
[ "\$1" = -u ] && { echo "\${FAKE_UID:-1000}"; exit 0; }
exec /usr/bin/id "\$@"
SH
# sudo as configured by default (env_reset): the command gets a clean environment
cat >"$fake/sudo" <<'SH'
#!/bin/sh
exec env -i PATH="$PATH" "$@"
SH
cat >"$fake/apt-get" <<SH
#!/bin/sh
echo "DEBIAN_FRONTEND=\${DEBIAN_FRONTEND:-} \$*" >>"$log"
SH
# openssl whose x509 step fails (FAKE_X509_FAIL=1); anything else is the real one
cat >"$fake/openssl" <<SH
#!/bin/sh
[ "\$1" = x509 ] && [ -n "\${FAKE_X509_FAIL:-}" ] && { echo "x509: simulated failure" >&2; exit 1; }
exec "$real_openssl" "\$@"
SH
chmod +x "$fake"/*

# ---- pc_need_pkgs ----------------------------------------------------------
for uid in 1000 0; do
  : >"$log"
  FAKE_UID=$uid PATH="$fake:$PATH" bash -c 'set -euo pipefail; source "$1"; pc_need_pkgs foo bar; pc_need_pkgs baz' \
    _ "$common" >/dev/null
  installs=$(grep -c ' install ' "$log" || true)
  updates=$(grep -c ' update' "$log" || true)
  [ "$installs" = 2 ] || fail "uid $uid: $installs apt-get install runs, expected 2: $(cat "$log")"
  [ "$updates" = 1 ] || fail "uid $uid: $updates apt-get update runs, expected 1: $(cat "$log")"
  if grep ' install ' "$log" | grep -v '^DEBIAN_FRONTEND=noninteractive ' >&2; then
    fail "uid $uid: apt-get install ran without DEBIAN_FRONTEND=noninteractive (above)"
  fi
done
echo "common_test: pc_need_pkgs: non-interactive installs as root and through sudo, one update"

# ---- pc_demo_certs -----------------------------------------------------------
d="$work/certs dir" # a space in the path, as a checkout may have
out=$(FAKE_X509_FAIL=1 PATH="$fake:$PATH" bash -c \
  'set -euo pipefail; source "$1"; if pc_demo_certs "$2"; then echo returned-0; else echo returned-1; fi' \
  _ "$common" "$d" 2>&1)
case "$out" in *returned-1*) ;; *) fail "a failing openssl x509: pc_demo_certs did not fail: $out" ;; esac
case "$out" in *"simulated failure"*) ;; *) fail "openssl's message not shown: $out" ;; esac
left=$(find "$d" -mindepth 1 2>/dev/null | head -n 5)
[ -z "$left" ] || fail "a failed pc_demo_certs left files: $left"

verify() { "$real_openssl" verify -CAfile "$d/ca.pem" -verify_hostname localhost "$d/server.pem" >/dev/null &&
  "$real_openssl" verify -CAfile "$d/ca.pem" -verify_ip 127.0.0.1 "$d/server.pem" >/dev/null; }
PATH="$fake:$PATH" bash -c 'set -euo pipefail; source "$1"; pc_demo_certs "$2"' _ "$common" "$d" ||
  fail "pc_demo_certs failed with a working openssl"
verify || fail "the server certificate does not verify against the demo CA"
[ "$(stat -c %a "$d/server.key")" = 600 ] || fail "server.key is not mode 600"
sum=$(cat "$d"/*.pem "$d"/*.key | cksum)
PATH="$fake:$PATH" bash -c 'set -euo pipefail; source "$1"; pc_demo_certs "$2"' _ "$common" "$d"
[ "$(cat "$d"/*.pem "$d"/*.key | cksum)" = "$sum" ] || fail "a second run replaced valid certificates"
# what the old demo.sh could leave: server.pem holding only the CA certificate
cp "$d/ca.pem" "$d/server.pem"
PATH="$fake:$PATH" bash -c 'set -euo pipefail; source "$1"; pc_demo_certs "$2"' _ "$common" "$d"
verify || fail "a broken server.pem was kept"
echo "common_test: pc_demo_certs: failures reported and clean, a valid chain kept, a broken one remade"

# ---- pc_help_has ---------------------------------------------------------------
# help in many writes, the flag first: a reader that stops at the match
# leaves the writer writing into a closed pipe
cat >"$fake/chatty" <<'SH'
#!/bin/bash
echo "  --tls-cert FILE   the flag" >&2
for i in $(seq 400); do echo "  --option-$i   more help text to keep writing" >&2; done
SH
chmod +x "$fake/chatty"
for i in $(seq 20); do
  bash -c 'set -euo pipefail; source "$1"; pc_help_has "$2" --tls-cert' _ "$common" "$fake/chatty" ||
    fail "pc_help_has missed --tls-cert in a long help (try $i)"
done
if bash -c 'set -euo pipefail; source "$1"; pc_help_has "$2" --no-such-flag' _ "$common" "$fake/chatty"; then
  fail "pc_help_has found a flag that is not there"
fi
echo "common_test: pc_help_has: a long help read whole"
