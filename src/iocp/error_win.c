/* SPDX-License-Identifier: MIT */
/* Translation of Windows error codes to PC_E* codes (error_win.h): Winsock and
 * Win32 codes from WSAGetLastError()/GetLastError(), and the NTSTATUS values
 * a completed OVERLAPPED carries. */
#include "error_win.h"

#include <stdint.h>

#include "portcullis.h"

int pc__from_win32(unsigned long err)
{
    switch (err) {
    case 0:
        return 0;
    case WSAEWOULDBLOCK:
    case WSATRY_AGAIN:
    case WSA_IO_INCOMPLETE:
        return PC_EAGAIN;
    case WSAEINVAL:
    case WSAEFAULT:
    case WSAEDESTADDRREQ:
    case WSAEMSGSIZE:
    case WSAEPROTOTYPE:
    case WSAENOTSOCK:
    case WSAEBADF:
    case WSANOTINITIALISED:
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_HANDLE:
    case ERROR_INVALID_FUNCTION:
    case ERROR_NOACCESS:
        return PC_EINVAL;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
        return PC_EACCES;
    case ERROR_PRIVILEGE_NOT_HELD:
        return PC_EPERM;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
        return PC_EMFILE;
    case WSAENOBUFS:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_INVALID_USER_BUFFER: /* too many outstanding asynchronous requests */
    case ERROR_INSUFFICIENT_BUFFER:
        return PC_ENOBUFS;
    case ERROR_NOT_ENOUGH_MEMORY: /* == WSA_NOT_ENOUGH_MEMORY */
    case ERROR_OUTOFMEMORY:
    case ERROR_NOT_ENOUGH_QUOTA:
        return PC_ENOMEM;
    case WSAEINPROGRESS:
    case WSAEALREADY:
    case WSAEISCONN:
    case ERROR_BUSY:
    case ERROR_SHARING_VIOLATION:
        return PC_EBUSY;
    case WSAENOPROTOOPT:
        return PC_ENOPROTOOPT;
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
    case WSAEOPNOTSUPP:
    case WSAEPFNOSUPPORT:
    case WSAEAFNOSUPPORT:
    case WSAVERNOTSUPPORTED:
    case WSAEINVALIDPROVIDER:
    case WSAEINVALIDPROCTABLE:
    case WSAEPROVIDERFAILEDINIT:
    case ERROR_NOT_SUPPORTED:
        return PC_ENOTSUP;
    case ERROR_CALL_NOT_IMPLEMENTED:
    case ERROR_PROC_NOT_FOUND:
        return PC_ENOSYS;
    case WSAEADDRINUSE:
    case ERROR_ADDRESS_ALREADY_ASSOCIATED:
        return PC_EADDRINUSE;
    case WSAEADDRNOTAVAIL:
        return PC_EADDRNOTAVAIL;
    case WSAENETDOWN:
    case WSAENETUNREACH:
    case ERROR_NETWORK_UNREACHABLE:
        return PC_ENETUNREACH;
    case WSAEHOSTDOWN:
    case WSAEHOSTUNREACH:
    case ERROR_HOST_UNREACHABLE:
        return PC_EHOSTUNREACH;
    case WSAECONNRESET:
    case WSAENETRESET:
    case ERROR_NETNAME_DELETED: /* an overlapped op on a connection the peer reset */
    case ERROR_UNEXP_NET_ERR:
        return PC_ECONNRESET;
    case WSAECONNABORTED:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_REQUEST_ABORTED:
        return PC_ECONNABORTED;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:
        return PC_ECONNREFUSED;
    case WSAENOTCONN:
    case ERROR_NOT_CONNECTED:
        return PC_ENOTCONN;
    case WSAESHUTDOWN:
    case WSAEDISCON:
    case ERROR_GRACEFUL_DISCONNECT:
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case ERROR_PIPE_NOT_CONNECTED:
        return PC_EPIPE;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
    case ERROR_TIMEOUT:
    case WAIT_TIMEOUT:
        return PC_ETIMEDOUT;
    case WSAEINTR:
    case WSAECANCELLED:
    case WSA_E_CANCELLED:
    case ERROR_OPERATION_ABORTED: /* == WSA_OPERATION_ABORTED */
    case ERROR_CANCELLED:
        return PC_ECANCELED;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_NOT_FOUND:
        return PC_ENOENT;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return PC_EEXIST;
    case ERROR_IO_DEVICE:
    case ERROR_CRC:
        return PC_EIO;
    default:
        return PC_EUNKNOWN;
    }
}

/* The NTSTATUS values sockets complete with, translated directly; anything
 * else goes through ntdll's RtlNtStatusToDosError. (ntstatus.h clashes with
 * winnt.h, hence local constants.) */
#define NTS_CANCELLED              ((long)0xC0000120L)
#define NTS_CONNECTION_RESET       ((long)0xC000020DL)
#define NTS_CONNECTION_ABORTED     ((long)0xC0000241L)
#define NTS_LOCAL_DISCONNECT       ((long)0xC000013BL)
#define NTS_REMOTE_DISCONNECT      ((long)0xC000013CL)
#define NTS_CONNECTION_REFUSED     ((long)0xC0000236L)
#define NTS_GRACEFUL_DISCONNECT    ((long)0xC0000237L)
#define NTS_IO_TIMEOUT             ((long)0xC00000B5L)
#define NTS_INSUFFICIENT_RESOURCES ((long)0xC000009AL)
#define NTS_NO_MEMORY              ((long)0xC0000017L)
#define NTS_INVALID_HANDLE         ((long)0xC0000008L)
#define NTS_HOST_UNREACHABLE       ((long)0xC000023DL)
#define NTS_NETWORK_UNREACHABLE    ((long)0xC000023CL)
#define NTS_PORT_UNREACHABLE       ((long)0xC000023FL)

typedef ULONG(WINAPI *nt_to_dos_fn)(LONG);

static BOOL CALLBACK load_nt_to_dos(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once;
    (void)param;
    HMODULE nt = GetModuleHandleW(L"ntdll.dll");
    FARPROC f = nt ? GetProcAddress(nt, "RtlNtStatusToDosError") : NULL;
    *ctx = (PVOID)(uintptr_t)f;
    return TRUE;
}

int pc__from_ntstatus(long status)
{
    if (status >= 0) return 0; /* NT_SUCCESS (includes informational values) */
    switch (status) {
    case NTS_CANCELLED:
        return PC_ECANCELED;
    case NTS_CONNECTION_RESET:
    case NTS_REMOTE_DISCONNECT:
    case NTS_LOCAL_DISCONNECT:
        return PC_ECONNRESET;
    case NTS_CONNECTION_ABORTED:
        return PC_ECONNABORTED;
    case NTS_CONNECTION_REFUSED:
    case NTS_PORT_UNREACHABLE:
        return PC_ECONNREFUSED;
    case NTS_GRACEFUL_DISCONNECT:
        return PC_EPIPE;
    case NTS_IO_TIMEOUT:
        return PC_ETIMEDOUT;
    case NTS_INSUFFICIENT_RESOURCES:
        return PC_ENOBUFS;
    case NTS_NO_MEMORY:
        return PC_ENOMEM;
    case NTS_INVALID_HANDLE:
        return PC_EINVAL;
    case NTS_HOST_UNREACHABLE:
        return PC_EHOSTUNREACH;
    case NTS_NETWORK_UNREACHABLE:
        return PC_ENETUNREACH;
    default:
        break;
    }
    static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
    void *ctx = NULL;
    InitOnceExecuteOnce(&once, load_nt_to_dos, NULL, &ctx);
    nt_to_dos_fn f = (nt_to_dos_fn)(uintptr_t)ctx;
    if (!f) return PC_EUNKNOWN;
    int e = pc__from_win32(f(status));
    return e ? e : PC_EUNKNOWN;
}
