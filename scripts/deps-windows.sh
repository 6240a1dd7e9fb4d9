#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deps-windows.sh PREFIX
#
# Builds the Windows dependencies of portcullis -- mimalloc, cmocka and OpenSSL 3,
# as static libraries -- with mingw-w64 into PREFIX, from Debian's source packages.
# The sources come through a private apt configuration (its own sources file,
# lists and cache in a temporary directory); the system's apt setup is only
# read, never changed.
#
# Cached: when PREFIX holds a stamp from the same recipe and suite and the
# libraries are there, this exits at once without touching the network.
# PC_DEPS_FORCE=1 rebuilds anyway. The stamp has two recipes: `recipe` for
# mimalloc and cmocka, `openssl_recipe` for OpenSSL; only the out-of-date group
# is built (so a prefix made by an older copy of this script, which knew no
# OpenSSL, gains OpenSSL without rebuilding the rest, and that older copy still
# finds its own part up to date).
#
# Environment:
#   PC_DEBIAN_SUITE   suite to take the sources from (default: bookworm)
#   PC_DEBIAN_MIRROR  archive URI (default: the URIs of the system's entry for that suite)
#   PC_JOBS           parallel build jobs (default: nproc)
#   PC_DEPS_FORCE     rebuild even if PREFIX is up to date
#
# Result (see docs/windows-build.md):
#   PREFIX/include/mimalloc.h, PREFIX/lib/libmimalloc-static.a,
#   PREFIX/lib/cmake/mimalloc/  (find_package(mimalloc CONFIG) -> target mimalloc-static)
#   PREFIX/include/cmocka.h, PREFIX/lib/libcmocka-static.a, PREFIX/lib/cmake/cmocka/
#   PREFIX/include/openssl/, PREFIX/lib/libssl.a, PREFIX/lib/libcrypto.a,
#   PREFIX/lib/pkgconfig/{openssl,libssl,libcrypto}.pc
#                               (cmake: OPENSSL_ROOT_DIR=PREFIX, OPENSSL_USE_STATIC_LIBS=ON;
#                               link ws2_32 crypt32, which FindOpenSSL adds)
#   PREFIX/.portcullis-deps     the stamp: recipes, suite, source package versions
set -euo pipefail

# Bump when anything below changes what ends up in PREFIX: RECIPE for mimalloc
# and cmocka, OPENSSL_RECIPE for OpenSSL.
readonly RECIPE=1
readonly OPENSSL_RECIPE=1
readonly TRIPLET=x86_64-w64-mingw32

# shellcheck source=scripts/wine-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/wine-env.sh"

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 PREFIX" >&2; exit 2; }
mkdir -p "$1" || pc_die "cannot create $1"
prefix=$(cd "$1" && pwd)
stamp=$prefix/.portcullis-deps
suite=${PC_DEBIAN_SUITE:-bookworm}
toolchain=$PC_ROOT/cmake/toolchain-mingw64.cmake
[[ -f $toolchain ]] || pc_die "missing $toolchain"

readonly BASE_FILES=(
  include/mimalloc.h lib/libmimalloc-static.a lib/cmake/mimalloc/mimalloc-config.cmake
  include/cmocka.h lib/libcmocka-static.a lib/cmake/cmocka/cmocka-config.cmake
)
readonly OPENSSL_FILES=(
  include/openssl/ssl.h include/openssl/opensslv.h lib/libssl.a lib/libcrypto.a
  lib/pkgconfig/openssl.pc
)

stamp_value() { # KEY FILE
  [[ -f $2 ]] || return 0
  sed -n "s/^$1=//p" "$2"
}

group_up_to_date() { # RECIPE-KEY RECIPE FILES...
  local key=$1 recipe=$2 f
  shift 2
  [[ -z ${PC_DEPS_FORCE:-} && -f $stamp ]] || return 1
  [[ $(stamp_value "$key" "$stamp") == "$recipe" && $(stamp_value suite "$stamp") == "$suite" ]] ||
    return 1
  for f in "$@"; do
    [[ -f $prefix/$f ]] || return 1
  done
}

# Sets PACKAGES to the source packages that need building.
plan() {
  PACKAGES=()
  group_up_to_date recipe "$RECIPE" "${BASE_FILES[@]}" || PACKAGES+=(mimalloc cmocka)
  group_up_to_date openssl_recipe "$OPENSSL_RECIPE" "${OPENSSL_FILES[@]}" || PACKAGES+=(openssl)
}

report() {
  pc_log "$1 $prefix: mimalloc $(stamp_value mimalloc "$stamp"), cmocka $(stamp_value cmocka "$stamp"), openssl $(stamp_value openssl "$stamp")"
}

plan
if ((${#PACKAGES[@]} == 0)); then
  report "Windows deps cached in"
  exit 0
fi

# One builder per PREFIX at a time; the other waits and then finds the stamp.
exec {lock_fd}>"$prefix/.lock"
flock "$lock_fd"
plan
if ((${#PACKAGES[@]} == 0)); then
  report "Windows deps cached in"
  exit 0
fi
want() { [[ " ${PACKAGES[*]} " == *" $1 "* ]]; }

t_start=$SECONDS
pc_need_pkgs gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 cmake dpkg-dev xz-utils make perl

work=$(mktemp -d "${TMPDIR:-/tmp}/pc-win-deps.XXXXXX")
# apt drops to the _apt user to download; let it into the work directory.
chmod 755 "$work"
keep_work=1
cleanup() {
  if ((keep_work)); then
    echo "deps-windows.sh: failed; logs and sources kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

run_logged() { # NAME CMD... -- output to $work/NAME.log, shown on failure
  local name=$1
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    tail -n 40 "$work/$name.log" >&2
    pc_die "$name failed: $* (full log: $work/$name.log)"
  fi
}

# ---- 1. a private apt configuration for deb-src -----------------------------------
# The URIs and Signed-By of the system's entry for $suite, from the deb822 file.
source_entry_deb822() {
  local f=/etc/apt/sources.list.d/debian.sources
  [[ -r $f ]] || return 0
  awk -v suite="$suite" '
    BEGIN { RS = ""; FS = "\n" }
    {
      types = uris = suites = signed = ""; enabled = "yes"
      for (i = 1; i <= NF; i++) {
        line = $i
        if (line ~ /^#/ || !match(line, /^[A-Za-z-]+:/)) continue
        key = tolower(substr(line, 1, RLENGTH - 1))
        val = substr(line, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = tolower(val)
      }
      if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
        split(uris, u, " ")
        print u[1] "\t" signed
        exit
      }
    }' "$f"
}

# The same from the one-line format (/etc/apt/sources.list and *.list:
# "deb [signed-by=KEY ...] URI SUITE COMPONENT..."), which the Debian 12
# installer still writes for some setups.
source_entry_oneline() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    awk -v suite="$suite" '
      $1 != "deb" { next }
      {
        signed = ""; i = 2
        if ($2 ~ /^\[/) { # options up to the closing bracket
          for (; i <= NF; i++) {
            o = $i; gsub(/[][]/, "", o)
            if (o ~ /^signed-by=/) signed = substr(o, 11)
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if ($(i + 1) == suite) { print $i "\t" signed; exit }
      }' "$f"
  done | head -n 1
}

source_entry() {
  local e
  e=$(source_entry_deb822)
  [[ -n $e ]] || e=$(source_entry_oneline)
  printf '%s' "$e"
}

entry=$(source_entry)
uri=${PC_DEBIAN_MIRROR:-${entry%%$'\t'*}}
signed_by=${entry#*$'\t'}
if [[ -z $entry ]]; then
  uri=${PC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  signed_by=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f $signed_by ]] || signed_by=""
fi
[[ -n $uri ]] || pc_die "no Debian archive URI found for suite $suite"

apt_dir=$work/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" \
  "$work/dl" "$work/src" "$work/build" "$work/stage"
{
  echo "Types: deb-src"
  echo "URIs: $uri"
  echo "Suites: $suite"
  echo "Components: main"
  [[ -z $signed_by ]] || echo "Signed-By: $signed_by"
} >"$apt_dir/sources.list.d/portcullis-src.sources"

apt_opts=(
  -o Dir::Etc::SourceList=/dev/null
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
)
if ((EUID == 0)) && id _apt >/dev/null 2>&1; then
  chown _apt "$work/dl" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
fi

pc_log "fetching source packages ${PACKAGES[*]} ($suite, $uri)"
run_logged apt-update apt-get -q "${apt_opts[@]}" update
(cd "$work/dl" && run_logged apt-source \
  apt-get -q "${apt_opts[@]}" source --download-only "${PACKAGES[@]}")

# ---- 2. unpack (Debian patches applied) -------------------------------------------------
declare -A version
for p in "${PACKAGES[@]}"; do
  dscs=("$work/dl/${p}"_*.dsc)
  [[ ${#dscs[@]} -eq 1 && -f ${dscs[0]} ]] || pc_die "expected one $p .dsc, got: ${dscs[*]}"
  version[$p]=$(sed -n 's/^Version: *//p' "${dscs[0]}")
  [[ -n ${version[$p]} ]] || pc_die "no Version in ${dscs[0]}"
  # apt already checked the files against the signed Sources index, so a missing
  # uploader key for the .dsc signature is only a warning here.
  run_logged "unpack-$p" dpkg-source --no-copy -x "${dscs[0]}" "$work/src/$p"
done

# ---- 3. build with mingw-w64 --------------------------------------------------------
if command -v ninja >/dev/null 2>&1; then generator=Ninja; else generator="Unix Makefiles"; fi
jobs=${PC_JOBS:-$(nproc)}
common=(
  -G "$generator"
  "-DCMAKE_TOOLCHAIN_FILE=$toolchain"
  "-DPC_WIN_DEPS=$prefix"
  -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_INSTALL_PREFIX=$prefix"
  -DCMAKE_INSTALL_LIBDIR=lib
  -DCMAKE_INSTALL_INCLUDEDIR=include
)

build_one() { # NAME CMAKE-ARGS...
  local p=$1
  shift
  pc_log "building $p ${version[$p]}"
  run_logged "configure-$p" cmake -S "$work/src/$p" -B "$work/build/$p" "${common[@]}" "$@"
  run_logged "build-$p" cmake --build "$work/build/$p" -j "$jobs"
  run_logged "install-$p" env DESTDIR="$work/stage" cmake --install "$work/build/$p"
}

# mimalloc: the static library only, no malloc override (portcullis calls mi_*
# through src/core/alloc.c), no redirect DLL. MI_INSTALL_TOPLEVEL puts the files
# straight in include/, lib/ and lib/cmake/mimalloc instead of the versioned
# mimalloc-2.0 subdirectories, so plain find_path/find_library work as well as
# find_package(mimalloc CONFIG).
stage=$work/stage$prefix
if want mimalloc; then
build_one mimalloc \
  -DMI_BUILD_SHARED=OFF -DMI_BUILD_STATIC=ON -DMI_BUILD_OBJECT=OFF -DMI_BUILD_TESTS=OFF \
  -DMI_OVERRIDE=OFF -DMI_WIN_REDIRECT=OFF -DMI_INSTALL_TOPLEVEL=ON

# cmocka 1.1.5 always builds its DLL; WITH_STATIC_LIB adds libcmocka-static.a.
# No examples, no self-tests, no cmockery header.
build_one cmocka \
  -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF -DWITH_CMOCKERY_SUPPORT=OFF \
  -DPICKY_DEVELOPER=OFF

# cmocka's DLL and import library are dropped: with them in PREFIX,
# find_library(cmocka) would pick libcmocka.dll.a and every test would need
# cmocka.dll at run time. Its package config names the import library, and
# wrongly at that (CMOCKA_LIBRARY=lib/cmocka.dll.a: its MinGW DLL-naming
# workaround empties the prefix), and its .pc says -lcmocka: point both at the
# static library. cmocka.h has no dllimport decoration, so no define is needed
# to link it statically.
rm -f "$stage/bin/cmocka.dll" "$stage/lib/libcmocka.dll.a"
rmdir "$stage/bin" 2>/dev/null || true
sed -i 's#/\(lib\)\?cmocka\.dll\.a#/libcmocka-static.a#g' "$stage/lib/cmake/cmocka/cmocka-config.cmake"
sed -i 's/-lcmocka\b/-lcmocka-static/' "$stage/lib/pkgconfig/cmocka.pc"
# mimalloc names its static library mimalloc-static on Windows but its .pc still
# says -lmimalloc.
sed -i 's/-lmimalloc\b/-lmimalloc-static/' "$stage/lib/pkgconfig/mimalloc.pc"
fi

# OpenSSL: static libssl.a and libcrypto.a and the headers, nothing else (no
# engines, legacy provider or loadable modules: everything a TLS client or
# server needs is in the default provider, linked in). Built in a separate tree
# (Configure supports out-of-source builds) with OpenSSL's own mingw64 target;
# only the library targets are made: build_libs (which install_dev needs) skips
# the openssl.exe app, the test programs and the manual pages. 3.0 has no
# no-apps or no-docs option; build_libs is what keeps them out.
if want openssl; then
  pc_log "building openssl ${version[openssl]}"
  mkdir -p "$work/build/openssl"
  run_logged configure-openssl env -C "$work/build/openssl" \
    perl "$work/src/openssl/Configure" mingw64 \
    --cross-compile-prefix="$TRIPLET-" --prefix="$prefix" --libdir=lib \
    no-shared no-module no-legacy no-engine no-tests no-ui-console
  run_logged build-openssl make -C "$work/build/openssl" -j "$jobs" build_libs
  run_logged install-openssl make -C "$work/build/openssl" DESTDIR="$work/stage" install_dev
fi


# ---- 4. check, then publish into PREFIX -------------------------------------------------
nm_defines() { # LIB SYMBOL
  local syms
  syms=$("$TRIPLET-nm" -g --defined-only "$1") || return 1
  grep -Eq "[[:space:]]T[[:space:]]$2\$" <<<"$syms"
}
if want mimalloc; then
  for f in "${BASE_FILES[@]}"; do
    [[ -f $stage/$f ]] || pc_die "build did not produce $f"
  done
  nm_defines "$stage/lib/libmimalloc-static.a" mi_malloc ||
    pc_die "libmimalloc-static.a does not define mi_malloc"
  nm_defines "$stage/lib/libcmocka-static.a" _cmocka_run_group_tests ||
    pc_die "libcmocka-static.a does not define _cmocka_run_group_tests"
fi
if want openssl; then
  for f in "${OPENSSL_FILES[@]}"; do
    [[ -f $stage/$f ]] || pc_die "build did not produce $f"
  done
  nm_defines "$stage/lib/libssl.a" SSL_CTX_new || pc_die "libssl.a does not define SSL_CTX_new"
  nm_defines "$stage/lib/libcrypto.a" EVP_PKEY_get_bits ||
    pc_die "libcrypto.a does not define EVP_PKEY_get_bits (not OpenSSL 3?)"
fi

# The stamp keeps what it said about the groups not rebuilt now.
declare -A old
for k in recipe mimalloc cmocka openssl_recipe openssl openssl_built compiler built; do
  old[$k]=$(stamp_value "$k" "$stamp")
done
rm -f "$stamp"
cp -a "$stage/." "$prefix/"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
{
  echo "suite=$suite"
  echo "compiler=$("$TRIPLET-gcc" -dumpversion)"
  if want mimalloc; then
    echo "recipe=$RECIPE"
    echo "mimalloc=${version[mimalloc]}"
    echo "cmocka=${version[cmocka]}"
    echo "built=$now"
  elif [[ -n ${old[recipe]} ]]; then
    echo "recipe=${old[recipe]}"
    echo "mimalloc=${old[mimalloc]}"
    echo "cmocka=${old[cmocka]}"
    echo "built=${old[built]}"
  fi
  if want openssl; then
    echo "openssl_recipe=$OPENSSL_RECIPE"
    echo "openssl=${version[openssl]}"
    echo "openssl_built=$now"
  elif [[ -n ${old[openssl_recipe]} ]]; then
    echo "openssl_recipe=${old[openssl_recipe]}"
    echo "openssl=${old[openssl]}"
    echo "openssl_built=${old[openssl_built]}"
  fi
} >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"

keep_work=0
report "Windows deps built in $((SECONDS - t_start)) s into"
