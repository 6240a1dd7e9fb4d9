#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build every libFuzzer target in tests/fuzz with clang (ASan + UBSan) and run
# each for SECONDS (default 15) on its seed corpus (tests/fuzz/corpus/NAME).
# Exits non-zero on any finding (crash, leak, timeout, sanitizer report).
# New inputs found are kept in a scratch copy of the corpus, not in the repo.
# FUZZ_ONLY=tests/fuzz/fuzz_NAME.c runs one target.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
cd "$PC_ROOT"
secs=${1:-15}
pc_need_pkgs clang libclang-rt-14-dev libmimalloc-dev libssl-dev
CC=${FUZZ_CC:-clang}
out="$PC_ROOT/build/fuzz"
mkdir -p "$out"

# target -> extra sources (the library's core and filter layers are plain C
# with no I/O, so targets compile them directly; the core's Windows files stay
# out)
core=""
for f in src/core/*.c; do
  case $f in *_win.c) ;; *) core="$core$f " ;; esac
done
declare -A extra=(
  [fuzz_http_parser]="samples/http/http_parser.c"
  [fuzz_rules]="$core src/filter/*.c"
  [fuzz_endpoint]="src/core/error.c src/iocp/endpoint.c"
  [fuzz_http_resp]="samples/stress/http_resp.c"
  [fuzz_proxy_header]="src/filter/proxy_header.c src/filter/addr.c src/core/error.c"
  [fuzz_tls_recv]="src/tls/tls_ctx.c src/tls/tls_sess.c $core -lssl -lcrypto"
)

# shellcheck disable=SC2054 # the commas belong to -fsanitize
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Iinclude -Isrc -Isamples/http
       -Isamples/stress "-DPC_TLS_TEST_DATA=\"$PC_ROOT/tests/data/tls\"")
failed=()
ran=0
for src in ${FUZZ_ONLY:-tests/fuzz/fuzz_*.c}; do
  name=$(basename "$src" .c)
  # shellcheck disable=SC2086
  srcs=$(eval echo ${extra[$name]:-})
  pc_log "fuzz: building $name"
  # shellcheck disable=SC2086 # srcs: one file or flag per word
  $CC "${flags[@]}" "$src" $srcs -lmimalloc -lpthread -o "$out/$name"
  corpus="$out/corpus-$name"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/${name#fuzz_}" ] && cp -r "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/"
  pc_log "fuzz: running $name for ${secs}s"
  if ! (cd "$out" && ASAN_OPTIONS=detect_leaks=1 "./$name" -max_total_time="$secs" \
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
