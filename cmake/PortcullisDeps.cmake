# Dependencies: mimalloc (required), liburing (Linux, optional), cmocka (tests).
# Found through their CMake package configs or pkg-config, falling back to a
# plain search under CMAKE_PREFIX_PATH (the mingw build's deps prefix).
find_package(PkgConfig QUIET)

find_package(mimalloc CONFIG QUIET)
if(TARGET mimalloc-static AND WIN32)
  add_library(pc::mimalloc ALIAS mimalloc-static)
elseif(TARGET mimalloc)
  add_library(pc::mimalloc ALIAS mimalloc)
else()
  find_path(MIMALLOC_INCLUDE_DIR mimalloc.h PATH_SUFFIXES mimalloc-2.0 mimalloc-2.1)
  find_library(MIMALLOC_LIBRARY NAMES mimalloc mimalloc-static)
  if(NOT MIMALLOC_INCLUDE_DIR OR NOT MIMALLOC_LIBRARY)
    message(FATAL_ERROR "mimalloc not found: install libmimalloc-dev (Linux) or run scripts/deps-windows.sh")
  endif()
  add_library(pc::mimalloc UNKNOWN IMPORTED)
  set_target_properties(pc::mimalloc PROPERTIES IMPORTED_LOCATION ${MIMALLOC_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${MIMALLOC_INCLUDE_DIR})
endif()

if(NOT WIN32)
  find_path(URING_INCLUDE_DIR liburing.h)
  find_library(URING_LIBRARY NAMES uring)
  if(URING_INCLUDE_DIR AND URING_LIBRARY)
    set(PC_URING_FOUND 1)
    add_library(pc::uring UNKNOWN IMPORTED)
    set_target_properties(pc::uring PROPERTIES IMPORTED_LOCATION ${URING_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${URING_INCLUDE_DIR})
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
