#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks of scripts/common.sh's helpers with stand-in commands (no package is
# installed, nothing needs root). Registered as the CTest test scripts.common.
#   pc_need_pkgs   apt-get install runs with DEBIAN_FRONTEND=noninteractive,
#                  also through sudo (which resets the environment), and
#                  apt-get update runs once for several calls
# Usage: tests/scripts/common_test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
common="$here/../../scripts/common.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/pc-common-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "common_test: FAIL: $*" >&2; exit 1; }

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
