/* SPDX-License-Identifier: MIT */
/* Translation of operating-system error codes to PC_E* codes. */
#ifndef PC_CORE_ERRNO_MAP_H
#define PC_CORE_ERRNO_MAP_H

/* errno value (positive) -> PC_E* (negative). Unknown values map to
 * PC_EUNKNOWN. On Windows, src/iocp maps WSA and ERROR_ codes itself and
 * falls back to this for C runtime errno values. */
int pc__from_errno(int e);

#endif
