# SPDX-License-Identifier: MIT
# ---- eBPF tier of the listener's kernel filter (docs/kernel-filter-ebpf.md) ----
# PC_EBPF: AUTO builds the tier when libbpf and a clang that targets bpf are
# found (Linux only); ON requires them; OFF never builds it. When not built,
# src/iocp/kfilter_ebpf_none.c answers PC_ENOSYS ("eBPF tier not built").
# Sets PC_EBPF_SOURCES (library sources) and PC_HAVE_EBPF; pc_ebpf_link(tgt)
# adds what a library target needs.
set(PC_EBPF "AUTO" CACHE STRING "eBPF tier of the kernel filter: AUTO, ON, OFF")
set_property(CACHE PC_EBPF PROPERTY STRINGS AUTO ON OFF)

set(PC_HAVE_EBPF 0)
set(PC_EBPF_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/kfilter_ebpf_none.c)
if(NOT WIN32 AND CMAKE_SYSTEM_NAME STREQUAL "Linux" AND NOT PC_EBPF STREQUAL "OFF")
  set(_pc_ebpf_missing "")
  find_path(LIBBPF_INCLUDE_DIR bpf/libbpf.h)
  find_library(LIBBPF_LIBRARY NAMES bpf)
  if(NOT LIBBPF_INCLUDE_DIR OR NOT LIBBPF_LIBRARY)
    string(APPEND _pc_ebpf_missing " libbpf (libbpf-dev)")
  endif()
  find_program(PC_BPF_CLANG NAMES clang clang-16 clang-15 clang-14)
  if(PC_BPF_CLANG)
    execute_process(COMMAND ${PC_BPF_CLANG} -print-targets OUTPUT_VARIABLE _pc_targets ERROR_QUIET)
    if(NOT _pc_targets MATCHES "bpf")
      string(APPEND _pc_ebpf_missing " a clang with the bpf target")
    endif()
  else()
    string(APPEND _pc_ebpf_missing " clang")
  endif()
  if(_pc_ebpf_missing STREQUAL "")
    set(PC_HAVE_EBPF 1)
  elseif(PC_EBPF STREQUAL "ON")
    message(FATAL_ERROR "PC_EBPF=ON needs${_pc_ebpf_missing}")
  else()
    message(STATUS "eBPF tier not built: missing${_pc_ebpf_missing}")
  endif()
endif()

# pc_bpf_embed(SRC NAME OUTVAR [DEPS...]): compile SRC with clang -target bpf
# and generate a C file defining NAME[] / NAME_len with the object's bytes;
# OUTVAR receives the generated file (add it to a target's sources). Files are
# named after SRC, so two sources may embed under one NAME (a test's program
# standing in for the library's: tests/CMakeLists.txt).
function(pc_bpf_embed src name outvar)
  get_filename_component(_base ${src} NAME_WE)
  set(_obj ${CMAKE_BINARY_DIR}/bpf/${_base}.bpf.o)
  set(_c ${CMAKE_BINARY_DIR}/bpf/${_base}_embed.c)
  add_custom_command(OUTPUT ${_obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bpf
    COMMAND ${PC_BPF_CLANG} ${PC_BPF_CFLAGS} -c ${src} -o ${_obj}
    DEPENDS ${src} ${ARGN}
    COMMENT "Compiling eBPF ${_base}"
    VERBATIM)
  add_custom_command(OUTPUT ${_c}
    COMMAND ${CMAKE_COMMAND} -DIN=${_obj} -DOUT=${_c} -DNAME=${name}
            -P ${PROJECT_SOURCE_DIR}/cmake/PortcullisEmbed.cmake
    DEPENDS ${_obj} ${PROJECT_SOURCE_DIR}/cmake/PortcullisEmbed.cmake
    COMMENT "Embedding eBPF ${_base}"
    VERBATIM)
  set(${outvar} ${_c} PARENT_SCOPE)
endfunction()

if(PC_HAVE_EBPF)
  # asm/ headers of the host for -target bpf
  set(_pc_bpf_inc "")
  if(CMAKE_LIBRARY_ARCHITECTURE)
    set(_pc_bpf_inc -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
  endif()
  set(PC_BPF_CFLAGS -O2 -g -target bpf -mcpu=v3 -Wall -Werror ${_pc_bpf_inc}
    -I${LIBBPF_INCLUDE_DIR} -I${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/bpf)
  pc_bpf_embed(${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/bpf/kfilter.bpf.c pc_kfilter_bpf_obj _pc_bpf_c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/bpf/kfilter_shared.h)
  set(PC_EBPF_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/kfilter_ebpf.c ${_pc_bpf_c})
  # one target generates the file for both libraries (Makefiles would run the
  # command twice in parallel otherwise)
  add_custom_target(pc_kfilter_bpf_gen DEPENDS ${_pc_bpf_c})
  # pc::bpf as every private dependency (cmake/portcullis-deps.cmake), so the
  # installed package and portcullis.pc name it too
  pc_private_dep(bpf)
endif()

function(pc_ebpf_link tgt)
  if(PC_HAVE_EBPF)
    # the libraries have it already, as one of PC_PRIVATE_DEPS: once is enough
    # (the exported static target listed it twice)
    get_target_property(_libs ${tgt} LINK_LIBRARIES)
    if(NOT "pc::bpf" IN_LIST _libs)
      target_link_libraries(${tgt} PRIVATE pc::bpf)
    endif()
    add_dependencies(${tgt} pc_kfilter_bpf_gen)
    target_compile_definitions(${tgt} PRIVATE PC_HAVE_EBPF=1)
  endif()
endfunction()
# ---- end of the eBPF tier ----------------------------------------------------
