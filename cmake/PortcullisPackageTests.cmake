# SPDX-License-Identifier: MIT
# Packaging tests (included from CMakeLists.txt when PC_BUILD_TESTS is on):
#   packaging.version_agrees  the version in include/portcullis.h is the one
#                             CMake, the library, the .pc, the package version
#                             file and CHANGELOG.md carry
#   packaging.consumer        install to a temporary prefix, build and run a
#                             consumer four ways (tests/consumer/run.sh); native
#                             unsanitized Linux builds only (a sanitized static
#                             library needs the sanitizer runtime in consumers)
find_program(PC_READELF NAMES readelf ${CMAKE_READELF})
add_test(NAME packaging.version_agrees
  COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -DPROJECT_VERSION=${PROJECT_VERSION}
          -DPC_FILE=${CMAKE_BINARY_DIR}/portcullis.pc
          -DCONFIG_VERSION_FILE=${CMAKE_BINARY_DIR}/portcullis-config-version.cmake
          -DSHARED_LIB=$<TARGET_FILE:portcullis_shared> -DREADELF=${PC_READELF}
          -P ${PROJECT_SOURCE_DIR}/tests/consumer/version_agrees.cmake)
set_tests_properties(packaging.version_agrees PROPERTIES LABELS packaging TIMEOUT 60)

if(NOT WIN32 AND NOT CMAKE_CROSSCOMPILING AND NOT PC_SANITIZE)
  add_test(NAME packaging.consumer
    COMMAND bash ${PROJECT_SOURCE_DIR}/tests/consumer/run.sh ${CMAKE_BINARY_DIR} ${CMAKE_C_COMPILER})
  set_tests_properties(packaging.consumer PROPERTIES LABELS packaging TIMEOUT 300)
endif()
