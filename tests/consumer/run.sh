#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs a built portcullis to a temporary prefix and builds and runs the
# consumer in this directory four ways: find_package with
# portcullis::portcullis and with portcullis::static, pkg-config (shared) and
# pkg-config --static against a copy of the prefix without the shared library
# (which also shows the .pc is relocatable). Each consumer runs an echo round
# trip on 127.0.0.1. Registered as the CTest test packaging.consumer.
#
# Usage: tests/consumer/run.sh BUILD_DIR [C_COMPILER]
# Needs cmake, pkg-config (or pkgconf) and readelf (binutils).
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR [C_COMPILER]}" && pwd)
cc=${2:-cc}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pc-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "consumer: FAIL: $*" >&2; exit 1; }
for tool in cmake pkg-config readelf "$cc"; do
  command -v "$tool" >/dev/null 2>&1 ||
    fail "needs $tool (Debian: apt-get install cmake pkg-config binutils build-essential)"
done
# needs_portcullis BIN: whether BIN has libportcullis as a NEEDED entry
# readelf's output read whole (grep -q quitting early would SIGPIPE it, and
# pipefail then reads that as "not needed")
needs_portcullis() { local d; d=$(readelf -d "$1") && grep -q 'NEEDED.*\[libportcullis\.so' <<<"$d"; }
run() { # run NAME BIN: the consumer must print its echo line and exit 0
  local out
  out=$("$2" 2>&1) || fail "$1: exit $?: $out"
  case "$out" in *"echo ok"*) ;; *) fail "$1: unexpected output: $out" ;; esac
  echo "consumer: $1: $out"
}

prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
pcfile=$(find "$prefix" -name portcullis.pc -path '*/pkgconfig/*' | head -n1)
[ -n "$pcfile" ] || fail "no portcullis.pc installed under $prefix"
version=$(sed -n 's/^Version: *//p' "$pcfile")

# 1, 2: find_package
for target in portcullis::portcullis portcullis::static; do
  name=cmake-${target#portcullis::}
  cmake -S "$here" -B "$work/$name" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_BUILD_TYPE=Release -DPC_CONSUMER_TARGET="$target" -DPC_CONSUMER_VERSION="$version" \
    >"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; fail "$name: configure"; }
  cmake --build "$work/$name" >>"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; fail "$name: build"; }
  bin="$work/$name/consumer"
  if [ "$target" = portcullis::static ]; then
    ! needs_portcullis "$bin" || fail "$name: linked the shared library"
  else
    needs_portcullis "$bin" || fail "$name: does not use the shared library"
  fi
  run "$name" "$bin"
done

# 3: pkg-config, shared
PKG_CONFIG_PATH=$(dirname "$pcfile")
export PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs portcullis) || fail "pkg-config --cflags --libs portcullis"
# shellcheck disable=SC2086
"$cc" -std=c11 -D_GNU_SOURCE -o "$work/pc-shared" "$here/main.c" $flags
needs_portcullis "$work/pc-shared" || fail "pkg-config shared: does not use the shared library"
libdir=$(pkg-config --variable=libdir portcullis)
LD_LIBRARY_PATH="$libdir" run pkg-config-shared "$work/pc-shared"

# 4: pkg-config --static, from a moved copy of the prefix holding only the
# static library (so -lportcullis cannot pick the shared one)
cp -a "$prefix" "$work/static-prefix"
rm -f "$work"/static-prefix/lib*/libportcullis.so* "$work"/static-prefix/lib/*/libportcullis.so*
PKG_CONFIG_PATH="${pcfile/#$prefix/$work/static-prefix}"
PKG_CONFIG_PATH=$(dirname "$PKG_CONFIG_PATH")
flags=$(pkg-config --static --cflags --libs portcullis) || fail "pkg-config --static --cflags --libs portcullis"
case "$flags" in *"$work/static-prefix"*) ;; *) fail "pkg-config --static: paths not relative to the moved .pc: $flags" ;; esac
# shellcheck disable=SC2086
"$cc" -std=c11 -D_GNU_SOURCE -o "$work/pc-static" "$here/main.c" $flags
! needs_portcullis "$work/pc-static" || fail "pkg-config --static: linked the shared library"
run pkg-config-static "$work/pc-static"
echo "consumer: all four builds passed (portcullis $version)"
