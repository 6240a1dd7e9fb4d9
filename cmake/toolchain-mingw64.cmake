# SPDX-License-Identifier: MIT
# CMake toolchain for cross-building portcullis for 64-bit Windows with
# mingw-w64 on Linux, and running the resulting .exe files under Wine.
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw64.cmake \
#         -DPC_WIN_DEPS=$HOME/.cache/portcullis/win-deps
#
# Cache variables:
#   PC_WIN_DEPS     prefix holding the mingw builds of mimalloc, cmocka and
#                   OpenSSL (scripts/deps-windows.sh). Default: $PC_WIN_DEPS, else
#                   ${PC_DEPS_CACHE:-$HOME/.cache/portcullis}/win-deps.
#   OPENSSL_ROOT_DIR  where find_package(OpenSSL) looks. Default: PC_WIN_DEPS.
#                   OPENSSL_USE_STATIC_LIBS is set: OpenSSL there is static
#                   (libssl.a, libcrypto.a), and CMake's FindOpenSSL then adds
#                   the Windows libraries it needs (ws2_32, crypt32) to
#                   OpenSSL::Crypto; the rest (advapi32, user32, gdi32) are
#                   in mingw's default link line.
#   PC_WINEPREFIX   Wine prefix the tests run in. Default: $WINEPREFIX, else
#                   ${PC_DEPS_CACHE:-$HOME/.cache/portcullis}/wineprefix.
#   PC_WINE         the Wine loader (/usr/lib/wine/wine64, wine64 or wine).
#   PC_WINESERVER   the wineserver next to it.
#
# Outside try_compile projects this file writes <build>/wine-run, a small shell
# wrapper that sets the Wine environment (prefix, WINEDEBUG, no Gecko/Mono, no
# display, WINEPATH with the mingw runtime DLL directories, the descriptor
# limit), starts the wineserver detached from the caller's output, and execs
# Wine (so a program run by hand gets its signals and its stderr as a Windows
# program would), and <build>/wine-test, which runs a test through wine-run
# with one retry when Wine itself fails at exit. wine-test is
# CMAKE_CROSSCOMPILING_EMULATOR, so `ctest --test-dir <build>` runs from a plain
# shell with nothing exported. See docs/windows-build.md.

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(PC_MINGW_TRIPLET x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${PC_MINGW_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${PC_MINGW_TRIPLET}-g++)
set(CMAKE_RC_COMPILER ${PC_MINGW_TRIPLET}-windres)

# ---- where the Windows libraries live -------------------------------------------
if(DEFINED ENV{PC_DEPS_CACHE} AND NOT "$ENV{PC_DEPS_CACHE}" STREQUAL "")
  set(_pc_cache "$ENV{PC_DEPS_CACHE}")
else()
  set(_pc_cache "$ENV{HOME}/.cache/portcullis")
endif()

if(NOT DEFINED PC_WIN_DEPS)
  if(DEFINED ENV{PC_WIN_DEPS} AND NOT "$ENV{PC_WIN_DEPS}" STREQUAL "")
    set(_pc_deps_default "$ENV{PC_WIN_DEPS}")
  else()
    set(_pc_deps_default "${_pc_cache}/win-deps")
  endif()
  set(PC_WIN_DEPS "${_pc_deps_default}" CACHE PATH "Prefix of the mingw-w64 builds of mimalloc and cmocka")
endif()

if(NOT DEFINED PC_WINEPREFIX)
  if(DEFINED ENV{WINEPREFIX} AND NOT "$ENV{WINEPREFIX}" STREQUAL "")
    set(_pc_wineprefix_default "$ENV{WINEPREFIX}")
  else()
    set(_pc_wineprefix_default "${_pc_cache}/wineprefix")
  endif()
  set(PC_WINEPREFIX "${_pc_wineprefix_default}" CACHE PATH "Wine prefix used to run the Windows tests")
endif()

# OpenSSL 3 from scripts/deps-windows.sh: static, in the deps prefix.
if(NOT DEFINED OPENSSL_ROOT_DIR)
  set(OPENSSL_ROOT_DIR "${PC_WIN_DEPS}" CACHE PATH "Prefix of the mingw-w64 build of OpenSSL")
endif()
set(OPENSSL_USE_STATIC_LIBS TRUE)

# try_compile projects re-read this file; hand them the same settings.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES PC_WIN_DEPS PC_WINEPREFIX OPENSSL_ROOT_DIR)

# Search only the mingw sysroot and the deps prefix for headers, libraries and
# package configs; programs (pkg-config, python, ...) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${PC_MINGW_TRIPLET} "${PC_WIN_DEPS}")
list(APPEND CMAKE_PREFIX_PATH "${PC_WIN_DEPS}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config, if anyone asks it, must not answer with the host's Linux libraries.
set(ENV{PKG_CONFIG_LIBDIR} "${PC_WIN_DEPS}/lib/pkgconfig")

# No libgcc/libstdc++ DLLs next to the tests: link those runtimes statically.
# (mimalloc, cmocka and OpenSSL are static libraries in PC_WIN_DEPS; Windows
# system DLLs such as ws2_32 and crypt32 come with Wine.)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

# ---- Wine as the emulator -----------------------------------------------------------
if(NOT PC_WINE)
  find_program(PC_WINE NAMES wine64 wine
    PATHS /usr/lib/wine /usr/lib64/wine /opt/wine-stable/bin
    DOC "Wine loader used to run the Windows tests")
endif()

if(PC_WINE AND NOT PC_WINESERVER)
  get_filename_component(_pc_wine_dir "${PC_WINE}" DIRECTORY)
  find_program(PC_WINESERVER NAMES wineserver wineserver64 HINTS "${_pc_wine_dir}"
    PATHS /usr/lib/wine /usr/lib64/wine DOC "wineserver belonging to PC_WINE")
endif()

get_property(_pc_in_try GLOBAL PROPERTY IN_TRY_COMPILE)
if(NOT PC_WINE OR NOT PC_WINESERVER)
  if(NOT _pc_in_try)
    message(WARNING "Wine not found: Windows executables will build but ctest cannot run them (apt-get install wine64)")
  endif()
elseif(NOT _pc_in_try)  # try_run uses the emulator of the calling project
  # DLL directories of the mingw runtime (libwinpthread-1.dll, libgcc_s_seh-1.dll,
  # libstdc++-6.dll) and of the deps, in case something links one dynamically.
  set(_pc_dll_dirs "${CMAKE_BINARY_DIR}/bin" "${PC_WIN_DEPS}/bin")
  foreach(_pc_dll libwinpthread-1.dll libgcc_s_seh-1.dll libstdc++-6.dll)
    execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=${_pc_dll}
      OUTPUT_VARIABLE _pc_dll_path OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _pc_rc ERROR_QUIET)
    if(_pc_rc EQUAL 0 AND IS_ABSOLUTE "${_pc_dll_path}" AND EXISTS "${_pc_dll_path}")
      get_filename_component(_pc_dir "${_pc_dll_path}" DIRECTORY)
      get_filename_component(_pc_dir "${_pc_dir}" REALPATH)
      list(APPEND _pc_dll_dirs "${_pc_dir}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _pc_dll_dirs)
  set(_pc_winepath "")
  foreach(_pc_dir IN LISTS _pc_dll_dirs)
    string(REPLACE "/" "\\" _pc_dir "Z:${_pc_dir}")
    string(APPEND _pc_winepath "${_pc_dir};")
  endforeach()

  set(_pc_runner "${CMAKE_BINARY_DIR}/wine-run")
  file(WRITE "${_pc_runner}" "#!/bin/sh
# Generated by cmake/toolchain-mingw64.cmake: runs a Windows program under Wine.
# CMAKE_CROSSCOMPILING_EMULATOR, so ctest works from a plain shell.
# PC_WINEDEBUG overrides WINEDEBUG (e.g. PC_WINEDEBUG=warn+winsock).
WINEPREFIX='${PC_WINEPREFIX}'
WINEARCH=win64
WINEDEBUG=\"\${PC_WINEDEBUG:--all}\"
WINEDLLOVERRIDES='mscoree,mshtml='
WINEPATH='${_pc_winepath}'
DISPLAY=
export WINEPREFIX WINEARCH WINEDEBUG WINEDLLOVERRIDES WINEPATH DISPLAY
# Wine holds about one Unix descriptor per socket in the program and one in the
# wineserver: with the usual soft limit of 1024 a test gets ~400 loopback
# connections. Raise the soft limit to the hard one.
ulimit -n \"$(ulimit -Hn)\" 2>/dev/null || true
# The first Wine process starts the wineserver and Wine's background services
# (services.exe, winedevice.exe, ...). Started from here they would inherit the
# test's output pipe, and ctest would wait ~3 s after every test for them to
# exit. So when no wineserver runs yet (-p5 fails with 2 if one does), start it
# and the services detached from our stdout/stderr; the server then stays 5 s
# after its last client, long enough for the next test to reuse it. Under a
# lock: a test started in parallel (ctest -j) must not find the server up
# while the services are still starting, or its own Wine process would start
# them with its output pipe and ctest would wait out the test's timeout.
# (The lock's descriptor is closed for the server and the services, which
# outlive this script and would hold the lock.)
(
  flock 9
  if '${PC_WINESERVER}' -p5 </dev/null >/dev/null 2>&1 9>&-; then
    '${PC_WINE}' cmd /c exit 0 </dev/null >/dev/null 2>&1 9>&- || true
  fi
) 9>'${PC_WINEPREFIX}.lock'
exec '${PC_WINE}' \"$@\"
")
  set(_pc_tester "${CMAKE_BINARY_DIR}/wine-test")
  file(WRITE "${_pc_tester}" "#!/bin/sh
# Generated by cmake/toolchain-mingw64.cmake: runs a Windows test through
# wine-run (CMAKE_CROSSCOMPILING_EMULATOR). Rarely (once in about ten CI runs;
# never in 200 runs of one test in a row) Wine's host process fails in glibc's
# loader as it exits, after the program ran: \"Inconsistency detected by ld.so:
# dl-fini.c ... Assertion ... failed\" and an abort in place of the program's
# exit status. That is Wine's exit, not the test's result, so on that message
# (and only then) the test runs once more, said on stderr. stderr is kept in a
# file to look for it and printed when the test ends. By hand, use wine-run:
# it execs Wine, so the program's stderr comes as it is written and a signal
# (Ctrl-C, kill -INT) reaches the program.
run='${_pc_runner}'
err=$(mktemp) || exec \"$run\" \"$@\"
# the file goes on every exit; a signal ends the script as it would have
# (dash runs no EXIT trap on a signal)
trap 'rm -f \"$err\"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
\"$run\" \"$@\" 2>\"$err\"
rc=$?
cat \"$err\" >&2
if [ \"$rc\" -ne 0 ] && grep -q '^Inconsistency detected by ld.so: dl-fini.c' \"$err\"; then
  echo \"wine-test: Wine's loader failed as the program exited (status $rc); running it again\" >&2
  \"$run\" \"$@\"
  rc=$?
fi
exit \"$rc\"
")
  foreach(_pc_script "${_pc_runner}" "${_pc_tester}")
    file(CHMOD "${_pc_script}" PERMISSIONS
      OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endforeach()
  set(CMAKE_CROSSCOMPILING_EMULATOR "${_pc_tester}")
endif()
