# SPDX-License-Identifier: MIT
# The private link dependencies of the static library, as imported targets
# named pc::<name>. The build includes this file (cmake/PortcullisDeps.cmake)
# and links portcullis_static to those targets; it is installed next to
# portcullis-config.cmake, which calls pc_private_dep for each name the build
# used, so the exported portcullis::static target finds the same names in a
# consumer's project.
#
# One table says, per dependency, its header, its library names, an optional
# CMake package that provides it (with the targets to prefer, in order) and
# its flags in portcullis.pc's Libs.private (default: -l<first library>).
# A new private dependency is one more pc__dep_spec line here, then in the
# build: pc_private_dep(<name>) in cmake/PortcullisDeps.cmake (or where the
# feature is configured, as cmake/PortcullisEbpf.cmake does for bpf) and
# list(APPEND PC_PRIVATE_DEPS <name>) in CMakeLists.txt where it is used;
# the package config and portcullis.pc follow from that list (libbpf below is
# one, used when the eBPF tier of the kernel filter is built).

# pc__dep_spec(<name> <header> <libraries> [<package> <targets> [<pc flags>]])
# Lists are ';'-separated strings; the targets are tried in order.
macro(pc__dep_spec name header libs)
  set(PC_DEP_${name}_HEADER "${header}")
  set(PC_DEP_${name}_LIBS "${libs}")
  set(PC_DEP_${name}_PACKAGE "")
  set(PC_DEP_${name}_TARGETS "")
  list(GET PC_DEP_${name}_LIBS 0 _pc_first_lib)
  set(PC_DEP_${name}_PC_LIBS "-l${_pc_first_lib}")
  if(${ARGC} GREATER 4)
    set(PC_DEP_${name}_PACKAGE "${ARGV3}")
    set(PC_DEP_${name}_TARGETS "${ARGV4}")
  endif()
  if(${ARGC} GREATER 5 AND NOT "${ARGV5}" STREQUAL "")
    set(PC_DEP_${name}_PC_LIBS "${ARGV5}")
  endif()
endmacro()

# the mingw build links mimalloc's static library (scripts/deps-windows.sh)
if(WIN32)
  set(_pc_mimalloc "mimalloc-static;mimalloc")
else()
  set(_pc_mimalloc "mimalloc;mimalloc-static")
endif()
#           name      header       libraries         package   targets
pc__dep_spec(mimalloc mimalloc.h   "${_pc_mimalloc}" mimalloc "${_pc_mimalloc}")
pc__dep_spec(uring    liburing.h   uring)
pc__dep_spec(bpf      bpf/libbpf.h bpf "" "" "-lbpf -lelf -lz")
# OpenSSL 3 (the TLS layer, src/tls): CMake's FindOpenSSL module; its
# OpenSSL::SSL target carries libcrypto (and, on Windows, ws2_32/crypt32)
pc__dep_spec(openssl  openssl/ssl.h "ssl;libssl" OpenSSL "OpenSSL::SSL" "-lssl -lcrypto")

# pc_private_dep(<name> [QUIET])
# Defines the INTERFACE IMPORTED target pc::<name> (once) and sets
# PC_DEP_<name>_FOUND in the caller's scope. Tries the dependency's CMake
# package first, then a plain header + library search (CMAKE_PREFIX_PATH,
# system paths). Without QUIET, a missing dependency is reported with
# message(STATUS).
function(pc_private_dep name)
  if(NOT DEFINED PC_DEP_${name}_HEADER)
    message(FATAL_ERROR "pc_private_dep: unknown dependency '${name}' (add a pc__dep_spec line)")
  endif()
  if(TARGET pc::${name})
    set(PC_DEP_${name}_FOUND 1 PARENT_SCOPE)
    return()
  endif()
  set(_link "")
  set(_inc "")
  if(PC_DEP_${name}_PACKAGE)
    if(PC_DEP_${name}_PACKAGE STREQUAL "OpenSSL")
      find_package(OpenSSL 3.0 QUIET) # a find module, not a package config
    else()
      find_package(${PC_DEP_${name}_PACKAGE} CONFIG QUIET)
    endif()
    foreach(_t IN LISTS PC_DEP_${name}_TARGETS)
      if(TARGET ${_t})
        set(_link ${_t})
        break()
      endif()
    endforeach()
  endif()
  if(NOT _link)
    find_path(PC_DEP_${name}_INCLUDE_DIR ${PC_DEP_${name}_HEADER}
      PATH_SUFFIXES mimalloc-2.0 mimalloc-2.1)
    find_library(PC_DEP_${name}_LIBRARY NAMES ${PC_DEP_${name}_LIBS})
    if(PC_DEP_${name}_INCLUDE_DIR AND PC_DEP_${name}_LIBRARY)
      set(_link ${PC_DEP_${name}_LIBRARY})
      set(_inc ${PC_DEP_${name}_INCLUDE_DIR})
    endif()
  endif()
  if(NOT _link)
    if(NOT "${ARGV1}" STREQUAL "QUIET")
      message(STATUS "portcullis: ${name} not found (header ${PC_DEP_${name}_HEADER}, "
                     "library ${PC_DEP_${name}_LIBS})")
    endif()
    set(PC_DEP_${name}_FOUND 0 PARENT_SCOPE)
    return()
  endif()
  add_library(pc::${name} INTERFACE IMPORTED)
  set_target_properties(pc::${name} PROPERTIES INTERFACE_LINK_LIBRARIES "${_link}")
  if(_inc)
    set_target_properties(pc::${name} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_inc}")
  endif()
  set(PC_DEP_${name}_FOUND 1 PARENT_SCOPE)
endfunction()

# pc_private_deps_pc_libs(<out-var> <names...>): the Libs.private flags of
# portcullis.pc for these dependencies ("-lmimalloc -luring").
function(pc_private_deps_pc_libs out)
  set(_flags "")
  foreach(_n IN LISTS ARGN)
    list(APPEND _flags ${PC_DEP_${_n}_PC_LIBS})
  endforeach()
  list(JOIN _flags " " _flags)
  set(${out} "${_flags}" PARENT_SCOPE)
endfunction()
