# SPDX-License-Identifier: MIT
# Dependencies: mimalloc (required), liburing (Linux, optional), cmocka (tests).
# Found through their CMake package configs or pkg-config, falling back to a
# plain search under CMAKE_PREFIX_PATH (the mingw build's deps prefix).
find_package(PkgConfig QUIET)

# mimalloc and liburing become pc::mimalloc and pc::uring, defined by the same
# file the installed package config uses (so portcullis::static's link
# interface names targets a consumer's project can recreate).
include(${CMAKE_CURRENT_LIST_DIR}/portcullis-deps.cmake)
pc_private_dep(mimalloc QUIET)
if(NOT PC_DEP_mimalloc_FOUND)
  message(FATAL_ERROR "mimalloc not found: install libmimalloc-dev (Linux) or run scripts/deps-windows.sh")
endif()

if(NOT WIN32)
  pc_private_dep(uring QUIET)
  if(PC_DEP_uring_FOUND)
    set(PC_URING_FOUND 1)
  endif()
endif()

# TLS (src/tls): OpenSSL 3. PC_TLS=AUTO builds the layer when OpenSSL is
# found, ON requires it, OFF leaves it out (the pc_tls_* functions then
# answer PC_ENOSYS).
set(PC_TLS "AUTO" CACHE STRING "TLS layer with OpenSSL 3: AUTO, ON, OFF")
set_property(CACHE PC_TLS PROPERTY STRINGS AUTO ON OFF)
set(PC_HAVE_TLS 0)
if(NOT PC_TLS STREQUAL "OFF")
  pc_private_dep(openssl QUIET)
  if(PC_DEP_openssl_FOUND)
    set(PC_HAVE_TLS 1)
  elseif(PC_TLS STREQUAL "ON")
    message(FATAL_ERROR "PC_TLS=ON needs OpenSSL 3 (libssl-dev, or scripts/deps-windows.sh)")
  else()
    message(STATUS "portcullis: OpenSSL 3 not found, TLS layer not built (PC_TLS=AUTO)")
  endif()
endif()

if(PC_BUILD_TESTS)
  find_path(CMOCKA_INCLUDE_DIR cmocka.h)
  find_library(CMOCKA_LIBRARY NAMES cmocka cmocka-static)
  if(NOT CMOCKA_INCLUDE_DIR OR NOT CMOCKA_LIBRARY)
    message(FATAL_ERROR "cmocka not found: install libcmocka-dev (Linux) or run scripts/deps-windows.sh")
  endif()
  add_library(pc::cmocka UNKNOWN IMPORTED)
  set_target_properties(pc::cmocka PROPERTIES IMPORTED_LOCATION ${CMOCKA_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CMOCKA_INCLUDE_DIR})
endif()
