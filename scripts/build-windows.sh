#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# build-windows.sh BUILD_DIR [extra cmake args...]
#
# Cross-builds portcullis for 64-bit Windows with mingw-w64 and prepares Wine to
# run its tests:
#   1. installs mingw-w64, Wine and CMake if missing (apt-get, non-interactive);
#   2. builds mimalloc, cmocka and OpenSSL 3 (static) into ${PC_DEPS_CACHE:-$HOME/.cache/portcullis}/win-deps
#      (scripts/deps-windows.sh; cached across runs);
#   3. initialises the Wine prefix ${PC_DEPS_CACHE:-$HOME/.cache/portcullis}/wineprefix
#      once (or $WINEPREFIX if set);
#   4. configures this repository with cmake/toolchain-mingw64.cmake and builds it.
# Then `ctest --test-dir BUILD_DIR` runs the .exe tests under Wine, from any shell:
# the toolchain writes BUILD_DIR/wine-run (the Wine environment baked in; run
# a program by hand with it) and BUILD_DIR/wine-test (wine-run for tests, with
# one retry when Wine fails at exit), CMAKE_CROSSCOMPILING_EMULATOR.
#
# Environment: PC_DEPS_CACHE, WINEPREFIX, PC_JOBS (default nproc),
# PC_BUILD_TYPE (default RelWithDebInfo). See docs/windows-build.md.
set -euo pipefail

# shellcheck source=scripts/wine-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/wine-env.sh"

[[ $# -ge 1 && -n $1 ]] || { echo "usage: $0 BUILD_DIR [extra cmake args...]" >&2; exit 2; }
build_dir=$1
shift

t_start=$SECONDS
pc_need_pkgs gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 cmake wine64

deps=$PC_CACHE/win-deps
"$PC_ROOT/scripts/deps-windows.sh" "$deps"

pc_wine_init

configure=(cmake -S "$PC_ROOT" -B "$build_dir")
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  # The generator of an existing build directory cannot change; keep whatever it has.
  if command -v ninja >/dev/null 2>&1; then
    configure+=(-G Ninja)
  else
    configure+=(-G "Unix Makefiles")
  fi
fi
configure+=(
  "-DCMAKE_TOOLCHAIN_FILE=$PC_ROOT/cmake/toolchain-mingw64.cmake"
  "-DPC_WIN_DEPS=$deps"
  "-DPC_WINEPREFIX=$WINEPREFIX"
  "-DPC_WINE=$PC_WINE"
  "-DPC_WINESERVER=$PC_WINESERVER"
  "-DCMAKE_BUILD_TYPE=${PC_BUILD_TYPE:-RelWithDebInfo}"
  "$@"
)
pc_log "configuring $build_dir"
"${configure[@]}" || pc_die "CMake configure failed for $build_dir"
pc_log "building $build_dir"
cmake --build "$build_dir" -j "${PC_JOBS:-$(nproc)}" || pc_die "build failed in $build_dir"

pc_log "Windows build ready in $((SECONDS - t_start)) s; run the tests with: ctest --test-dir $build_dir"
