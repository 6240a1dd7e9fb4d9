/* SPDX-License-Identifier: MIT */
/* Translation of operating-system error codes to PC_E* codes. */
#ifndef PC_CORE_ERRNO_MAP_H
#define PC_CORE_ERRNO_MAP_H

/* errno value (positive) -> PC_E* (negative). Unknown values map to
 * PC_EUNKNOWN. On Windows, src/iocp maps WSA and ERROR_ codes itself and
 * falls back to this for C runtime errno values. */
int pc__from_errno(int e);

/* errno of a file that could not be opened for reading (fopen) -> PC_ENOENT
 * (no such file, or a part of the path that is not a directory), PC_EACCES
 * (not allowed), PC_ENOMEM, else PC_EIO. The rules loader and the TLS
 * contexts report a file they cannot open this way. */
int pc__from_open_errno(int e);

#endif
