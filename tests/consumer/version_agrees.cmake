# SPDX-License-Identifier: MIT
# cmake -P script (CTest: packaging.version_agrees): the version in
# include/portcullis.h is the one CMake, the shared library, portcullis.pc,
# the package version file and the first CHANGELOG.md entry carry.
#   -DSRC=<source dir> -DPROJECT_VERSION=<x.y.z> -DPC_FILE=<built portcullis.pc>
#   -DCONFIG_VERSION_FILE=<built portcullis-config-version.cmake>
#   -DSHARED_LIB=<the shared library file> [-DREADELF=<readelf>]
set(errors "")
macro(expect what got want)
  if(NOT "${got}" STREQUAL "${want}")
    string(APPEND errors "  ${what}: '${got}', expected '${want}'\n")
  endif()
endmacro()

file(READ "${SRC}/include/portcullis.h" header)
foreach(part MAJOR MINOR PATCH)
  if(NOT header MATCHES "\n#define PC_VERSION_${part} +([0-9]+)\n")
    message(FATAL_ERROR "include/portcullis.h: no PC_VERSION_${part}")
  endif()
  set(v_${part} ${CMAKE_MATCH_1})
endforeach()
set(version "${v_MAJOR}.${v_MINOR}.${v_PATCH}")
if(v_MAJOR EQUAL 0)
  set(soversion "${v_MAJOR}.${v_MINOR}")
else()
  set(soversion "${v_MAJOR}")
endif()

expect("CMake project version" "${PROJECT_VERSION}" "${version}")

file(STRINGS "${PC_FILE}" pc_version REGEX "^Version:")
string(REGEX REPLACE "^Version: *" "" pc_version "${pc_version}")
expect("portcullis.pc Version" "${pc_version}" "${version}")

include("${CONFIG_VERSION_FILE}")
expect("portcullis-config-version.cmake PACKAGE_VERSION" "${PACKAGE_VERSION}" "${version}")

file(STRINGS "${SRC}/CHANGELOG.md" entries REGEX "^## \\[")
list(GET entries 0 first)
string(REGEX REPLACE "^## \\[([^]]*)\\].*" "\\1" first "${first}")
expect("first CHANGELOG.md entry" "${first}" "${version}")

get_filename_component(lib_name "${SHARED_LIB}" NAME)
if(lib_name MATCHES "\\.so")
  expect("shared library file name" "${lib_name}" "libportcullis.so.${version}")
  if(READELF)
    execute_process(COMMAND ${READELF} -d "${SHARED_LIB}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
    if(rc EQUAL 0 AND dyn MATCHES "Library soname: \\[([^]]*)\\]")
      expect("shared library soname" "${CMAKE_MATCH_1}" "libportcullis.so.${soversion}")
    else()
      string(APPEND errors "  no soname in ${SHARED_LIB}\n")
    endif()
  endif()
endif()

if(errors)
  message(FATAL_ERROR "version ${version} (include/portcullis.h) disagrees with:\n${errors}")
endif()
message(STATUS "version ${version} everywhere (soname ${soversion})")
