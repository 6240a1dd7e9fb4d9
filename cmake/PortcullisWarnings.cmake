# SPDX-License-Identifier: MIT
# Warnings are errors, for gcc, clang and mingw-w64.
function(pc_target_warnings tgt)
  if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${tgt} PRIVATE
      -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes
      -Wmissing-prototypes -Wformat=2 -Wvla -Wundef -Wcast-align
      -Wno-unused-parameter)
  endif()
  if(PC_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=${PC_SANITIZE} -fno-omit-frame-pointer)
    target_link_options(${tgt} PRIVATE -fsanitize=${PC_SANITIZE})
  endif()
endfunction()

# Sanitizers apply to every target (tests and samples link the static library).
if(PC_SANITIZE)
  # the allocation seam uses the C library under sanitizers (see src/core/alloc.c)
  add_compile_definitions(PC_ALLOC_SYSTEM=1)
  add_compile_options(-fsanitize=${PC_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${PC_SANITIZE})
endif()
