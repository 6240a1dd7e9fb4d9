# SPDX-License-Identifier: MIT
# A benchmark's smoke test: run BIN with ARGS (one string, split as a shell
# would; through EMU, the cross-compiling emulator, when set) and fail unless
# it exits 0 and its standard output matches the regular expression EXPECT.
# (A test's PASS_REGULAR_EXPRESSION alone would ignore the exit status, so a
# sanitizer's report after the output would pass.)
#   cmake -DBIN=... -DARGS="..." -DEXPECT=... [-DEMU=...] -P expect_output.cmake
separate_arguments(_args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${EMU} ${BIN} ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                ERROR_VARIABLE _err)
message("${_out}${_err}")
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${BIN} exited with ${_rc}")
endif()
if(NOT _out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${BIN}: the output does not match ${EXPECT}")
endif()
