/* SPDX-License-Identifier: MIT */
/* Translation of Windows error codes to PC_E* codes: the one place where the
 * Windows engine interprets a system error (implemented in error_win.c).
 * Winsock (WSAE*) and Win32 (ERROR_*) codes share one number space; NTSTATUS
 * values are what a completed OVERLAPPED carries in its Internal field. */
#ifndef PC_IOCP_ERROR_WIN_H
#define PC_IOCP_ERROR_WIN_H

/* WSAGetLastError() / GetLastError() value -> PC_E* (0 for 0). Unknown values
 * map to PC_EUNKNOWN. */
int pc__from_win32(unsigned long err);

/* NTSTATUS of a finished overlapped operation -> 0 or PC_E*. */
int pc__from_ntstatus(long status);

#endif
