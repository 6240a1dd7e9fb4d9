#!/usr/bin/env bash
# deps-windows.sh PREFIX
#
# Builds the Windows dependencies of portcullis -- mimalloc and cmocka, as
# static libraries -- with mingw-w64 into PREFIX, from Debian's source packages.
# The sources come through a private apt configuration (its own sources file,
# lists and cache in a temporary directory); the system's apt setup is only
# read, never changed.
#
# Cached: when PREFIX holds a stamp from the same recipe and suite and the
# libraries are there, this exits at once without touching the network.
# PC_DEPS_FORCE=1 rebuilds anyway.
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
#   PREFIX/.portcullis-deps     the stamp: recipe, suite, source package versions
set -euo pipefail

# Bump when anything below changes what ends up in PREFIX.
readonly RECIPE=1
readonly TRIPLET=x86_64-w64-mingw32
readonly PACKAGES=(mimalloc cmocka)

# shellcheck source=scripts/wine-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/wine-env.sh"

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 PREFIX" >&2; exit 2; }
mkdir -p "$1" || pc_die "cannot create $1"
prefix=$(cd "$1" && pwd)
stamp=$prefix/.portcullis-deps
suite=${PC_DEBIAN_SUITE:-bookworm}
toolchain=$PC_ROOT/cmake/toolchain-mingw64.cmake
[[ -f $toolchain ]] || pc_die "missing $toolchain"

readonly RESULT_FILES=(
  include/mimalloc.h lib/libmimalloc-static.a lib/cmake/mimalloc/mimalloc-config.cmake
  include/cmocka.h lib/libcmocka-static.a lib/cmake/cmocka/cmocka-config.cmake
)

stamp_value() { # KEY FILE
  sed -n "s/^$1=//p" "$2"
}

up_to_date() {
  [[ -z ${PC_DEPS_FORCE:-} && -f $stamp ]] || return 1
  [[ $(stamp_value recipe "$stamp") == "$RECIPE" && $(stamp_value suite "$stamp") == "$suite" ]] ||
    return 1
  local f
  for f in "${RESULT_FILES[@]}"; do
    [[ -f $prefix/$f ]] || return 1
  done
}

report() {
  pc_log "$1 $prefix: mimalloc $(stamp_value mimalloc "$stamp"), cmocka $(stamp_value cmocka "$stamp")"
}

if up_to_date; then
  report "Windows deps cached in"
  exit 0
fi

# One builder per PREFIX at a time; the other waits and then finds the stamp.
exec {lock_fd}>"$prefix/.lock"
flock "$lock_fd"
if up_to_date; then
  report "Windows deps cached in"
  exit 0
fi

t_start=$SECONDS
pc_need_pkgs gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 cmake dpkg-dev xz-utils

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
source_entry() {
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
build_one mimalloc \
  -DMI_BUILD_SHARED=OFF -DMI_BUILD_STATIC=ON -DMI_BUILD_OBJECT=OFF -DMI_BUILD_TESTS=OFF \
  -DMI_OVERRIDE=OFF -DMI_WIN_REDIRECT=OFF -DMI_INSTALL_TOPLEVEL=ON

# cmocka 1.1.5 always builds its DLL; WITH_STATIC_LIB adds libcmocka-static.a.
# No examples, no self-tests, no cmockery header.
build_one cmocka \
  -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF -DWITH_CMOCKERY_SUPPORT=OFF \
  -DPICKY_DEVELOPER=OFF

stage=$work/stage$prefix
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

# ---- 4. check, then publish into PREFIX -------------------------------------------------
for f in "${RESULT_FILES[@]}"; do
  [[ -f $stage/$f ]] || pc_die "build did not produce $f"
done
nm_defines() { # LIB SYMBOL
  local syms
  syms=$("$TRIPLET-nm" -g --defined-only "$1") || return 1
  grep -Eq "[[:space:]]T[[:space:]]$2\$" <<<"$syms"
}
nm_defines "$stage/lib/libmimalloc-static.a" mi_malloc ||
  pc_die "libmimalloc-static.a does not define mi_malloc"
nm_defines "$stage/lib/libcmocka-static.a" _cmocka_run_group_tests ||
  pc_die "libcmocka-static.a does not define _cmocka_run_group_tests"

rm -f "$stamp"
cp -a "$stage/." "$prefix/"
{
  echo "recipe=$RECIPE"
  echo "suite=$suite"
  echo "mimalloc=${version[mimalloc]}"
  echo "cmocka=${version[cmocka]}"
  echo "compiler=$("$TRIPLET-gcc" -dumpversion)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"

keep_work=0
report "Windows deps built in $((SECONDS - t_start)) s into"
