#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build every libFuzzer target in tests/fuzz with clang (ASan + UBSan; CMake
# with PC_BUILD_FUZZ=ON, in build/fuzz) and run each for SECONDS (default 15)
# on its seed corpus (tests/fuzz/corpus/NAME).
# Exits non-zero on any finding (crash, leak, timeout, sanitizer report).
# New inputs found are kept in a scratch copy of the corpus, not in the repo.
# FUZZ_ONLY=tests/fuzz/fuzz_NAME.c runs one target.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
cd "$PC_ROOT"
secs=${1:-15}
# the project's configure needs its base packages (cmocka, OpenSSL, ...);
# libclang-rt-14-dev: libFuzzer and clang's sanitizer runtimes
pc_base_pkgs
pc_need_pkgs libclang-rt-14-dev
CC=${FUZZ_CC:-clang}
out="$PC_ROOT/build/fuzz"

# The targets and the library sources each one compiles are defined in
# tests/fuzz/CMakeLists.txt (PC_BUILD_FUZZ=ON); only they are built here.
names=()
for src in ${FUZZ_ONLY:-tests/fuzz/fuzz_*.c}; do
  names+=("$(basename "$src" .c)")
done
pc_log "fuzz: building ${names[*]}"
cmake -S . -B "$out" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPC_BUILD_FUZZ=ON \
  -DPC_BUILD_TESTS=ON -DPC_BUILD_SAMPLES=OFF -DPC_TLS=ON >/dev/null
cmake --build "$out" -j"$(pc_jobs)" --target "${names[@]}"
# each seed once first (CTest fuzz.NAME.seeds): a seed that fails is a finding
short=$(IFS='|' && echo "${names[*]#fuzz_}")
ctest --test-dir "$out" -L fuzz -R "^fuzz\.($short)\.seeds\$" --output-on-failure

failed=()
ran=0
for name in "${names[@]}"; do
  corpus="$out/corpus-$name"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/${name#fuzz_}" ] && cp -r "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/"
  pc_log "fuzz: running $name for ${secs}s"
  if ! (cd "$out" && ASAN_OPTIONS=detect_leaks=1 "$out/bin/$name" -max_total_time="$secs" \
        -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" >"$out/$name.log" 2>&1); then
    tail -40 "$out/$name.log"
    failed+=("$name")
  else
    grep -E "stat::number_of_executed_units|Done" "$out/$name.log" | tail -2 || true
  fi
  ran=$((ran + 1))
done
pc_log "fuzz: $ran target(s), ${#failed[@]} with findings ${failed[*]:-}"
[ ${#failed[@]} -eq 0 ]
