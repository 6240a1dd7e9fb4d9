# SPDX-License-Identifier: MIT
# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P PortcullisEmbed.cmake
# Writes a C file defining `const unsigned char NAME[]` and `NAME_len` with
# the bytes of IN.
file(READ ${IN} _hex HEX)
string(LENGTH "${_hex}" _n)
math(EXPR _len "${_n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" _bytes "${_bytes}")
file(WRITE ${OUT} "/* Generated from ${IN}: do not edit. */\n#include <stddef.h>\n"
  "extern const unsigned char ${NAME}[];\nextern const size_t ${NAME}_len;\n"
  "__attribute__((aligned(8))) const unsigned char ${NAME}[] = {\n${_bytes}\n};\n"
  "const size_t ${NAME}_len = ${_len};\n")
