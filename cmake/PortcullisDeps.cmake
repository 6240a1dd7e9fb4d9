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
