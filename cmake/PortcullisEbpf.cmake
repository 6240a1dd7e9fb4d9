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

if(PC_HAVE_EBPF)
  # asm/ headers of the host for -target bpf
  set(_pc_bpf_inc "")
  if(CMAKE_LIBRARY_ARCHITECTURE)
    set(_pc_bpf_inc -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
  endif()
  set(_pc_bpf_dir ${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/bpf)
  set(_pc_bpf_obj ${CMAKE_BINARY_DIR}/bpf/kfilter.bpf.o)
  set(_pc_bpf_c ${CMAKE_BINARY_DIR}/bpf/kfilter_bpf_obj.c)
  add_custom_command(OUTPUT ${_pc_bpf_obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bpf
    COMMAND ${PC_BPF_CLANG} -O2 -g -target bpf -mcpu=v3 -Wall -Werror ${_pc_bpf_inc}
            -I${LIBBPF_INCLUDE_DIR} -c ${_pc_bpf_dir}/kfilter.bpf.c -o ${_pc_bpf_obj}
    DEPENDS ${_pc_bpf_dir}/kfilter.bpf.c ${_pc_bpf_dir}/kfilter_shared.h
    COMMENT "Compiling the eBPF kernel filter"
    VERBATIM)
  add_custom_command(OUTPUT ${_pc_bpf_c}
    COMMAND ${CMAKE_COMMAND} -DIN=${_pc_bpf_obj} -DOUT=${_pc_bpf_c} -DNAME=pc_kfilter_bpf_obj
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/PortcullisEmbed.cmake
    DEPENDS ${_pc_bpf_obj} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/PortcullisEmbed.cmake
    COMMENT "Embedding the eBPF kernel filter"
    VERBATIM)
  set(PC_EBPF_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/src/iocp/kfilter_ebpf.c ${_pc_bpf_c})
  add_library(pc::bpf UNKNOWN IMPORTED)
  set_target_properties(pc::bpf PROPERTIES IMPORTED_LOCATION ${LIBBPF_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${LIBBPF_INCLUDE_DIR})
endif()

function(pc_ebpf_link tgt)
  if(PC_HAVE_EBPF)
    target_link_libraries(${tgt} PRIVATE pc::bpf)
    target_compile_definitions(${tgt} PRIVATE PC_HAVE_EBPF=1)
  endif()
endfunction()
# ---- end of the eBPF tier ----------------------------------------------------
