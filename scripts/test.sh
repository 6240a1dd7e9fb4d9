#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Set up this machine and pass every test: installs what is missing, builds
# and runs CTest for each stage. Stages:
#   linux    RelWithDebInfo build, every unit and integration test, on every
#            Linux backend built (epoll, io_uring); a compile-only clang build;
#            a build without TLS, io_uring and eBPF (unit, packaging tests);
#            scripts/check-spdx.sh; shellcheck over every shell script
#   asan     the whole suite built with -fsanitize=address,undefined
#   tsan     the whole suite built with -fsanitize=thread
#   fuzz     every libFuzzer target for a few seconds (scripts/fuzz.sh)
#   windows  mingw-w64 cross build, the same suite under Wine (if the
#            Windows engine is present)
# Usage: scripts/test.sh [stage...]   (default: all stages)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
cd "$PC_ROOT"

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(linux asan tsan fuzz windows)
failed=()

stage_linux() {
  bash scripts/check-spdx.sh # every source, script and CMake file says its licence
  pc_need_pkgs shellcheck # every shell script in the repo, warnings included
  local scripts
  mapfile -t scripts < <(find scripts bench tests -name '*.sh')
  shellcheck "${scripts[@]}" .ci/run
  pc_base_pkgs
  pc_need_pkgs haproxy # tests/process/haproxy_proxy.py: a real HAProxy in front of pc-http
  pc_need_pkgs iproute2 # tests/process/kernel_filter.py's network-namespace case (ip netns)
  local b="$PC_ROOT/build/test-linux"
  cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$b" -j"$(pc_jobs)"
  ctest --test-dir "$b" --output-on-failure -j2
  # clang keeps warnings-as-errors too: a compile-only build (about 50 s here)
  pc_need_pkgs clang
  CC=clang cmake -S . -B "$PC_ROOT/build/test-clang" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$PC_ROOT/build/test-clang" -j"$(pc_jobs)"
  # the optional dependencies off (what a machine without libssl-dev,
  # liburing-dev or libbpf-dev gets): it builds, and its unit, packaging and
  # (skipped) TLS tests pass
  local m="$PC_ROOT/build/test-minimal"
  cmake -S . -B "$m" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPC_TLS=OFF -DPC_EBPF=OFF \
    -DPC_BACKEND=epoll >/dev/null
  cmake --build "$m" -j"$(pc_jobs)"
  ctest --test-dir "$m" --output-on-failure -j2 -R '^(unit|packaging|integration\.tls)\.'
}

sanitized() {
  pc_base_pkgs
  local b="$PC_ROOT/build/test-$1"
  cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Debug -DPC_SANITIZE="$2" -DPC_BUILD_SAMPLES=OFF >/dev/null
  cmake --build "$b" -j"$(pc_jobs)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir "$b" --output-on-failure -j2
}

stage_asan() { sanitized asan address,undefined; }
stage_tsan() { sanitized tsan thread; }
stage_fuzz() { bash scripts/fuzz.sh "${PC_FUZZ_SECONDS:-10}"; }

stage_windows() {
  if [ ! -f src/iocp/port_win.c ] || [ ! -x scripts/build-windows.sh ]; then
    pc_log "windows: skipped (no Windows engine in this tree)"
    return 0
  fi
  local b="$PC_ROOT/build/test-windows"
  scripts/build-windows.sh "$b"
  ctest --test-dir "$b" --output-on-failure -j2
}

# Each stage runs in a subshell with -e, outside any condition or || list,
# so it stops at its first failing command: inside `if ! stage_x` (or
# `stage_x || ...`) bash ignores -e and only the stage's last command would
# count (a failing ctest followed by a passing clang build once reported the
# linux stage passed).
for s in "${stages[@]}"; do
  pc_log "stage: $s"
  set +e
  (
    set -e
    "stage_$s"
  )
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    failed+=("$s")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  pc_log "FAILED stages: ${failed[*]}"
  exit 1
fi
pc_log "all stages passed: ${stages[*]}"
