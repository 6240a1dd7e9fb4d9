/* Winsock socket primitives (sock.h) and the translation of Windows error
 * codes to PC_E* codes (error_win.h).
 *
 * Sockets are created overlapped (the completion port needs it) and not
 * inheritable. Connection sockets are also put in non-blocking mode: the
 * engine's zero-byte overlapped WSARecv only says "readable", the shared code
 * then drains with plain recv() until WSAEWOULDBLOCK. Overlapped operations
 * are unaffected by FIONBIO: they still pend. */
#include "sock.h"

#include <limits.h>

#include "core/thread.h"
#include "error_win.h"

/* ---- error translation -------------------------------------------------------- */

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

int sock_last_error(void)
{
    int e = pc__from_win32((unsigned long)WSAGetLastError());
    return e ? e : PC_EUNKNOWN;
}

/* ---- library lifetime ------------------------------------------------------------ */

static SRWLOCK lib_lock = SRWLOCK_INIT;
static int lib_refs;

int sock_lib_init(void)
{
    int rc = 0;
    AcquireSRWLockExclusive(&lib_lock);
    if (lib_refs == 0) {
        WSADATA wd;
        int e = WSAStartup(MAKEWORD(2, 2), &wd);
        if (e != 0) {
            rc = pc__from_win32((unsigned long)e);
        } else if (LOBYTE(wd.wVersion) != 2 || HIBYTE(wd.wVersion) != 2) {
            WSACleanup();
            rc = PC_ENOTSUP;
        }
    }
    if (rc == 0) lib_refs++;
    ReleaseSRWLockExclusive(&lib_lock);
    return rc;
}

void sock_lib_cleanup(void)
{
    AcquireSRWLockExclusive(&lib_lock);
    if (lib_refs > 0 && --lib_refs == 0) WSACleanup();
    ReleaseSRWLockExclusive(&lib_lock);
}

/* ---- sockets ------------------------------------------------------------------------ */

/* An overlapped, non-inheritable TCP socket. WSA_FLAG_NO_HANDLE_INHERIT is
 * refused (WSAEINVAL) before Windows 7 SP1; fall back to clearing the flag on
 * the handle. */
static int new_socket(int family, sock_t *out)
{
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL) {
        s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (s != INVALID_SOCKET) SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    }
    if (s == INVALID_SOCKET) return sock_last_error();
    *out = s;
    return 0;
}

int sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, int cond_accept,
                int *cond_err, sock_t *out)
{
    sock_t s = INVALID_SOCKET; /* set by new_socket on success */
    int rc = new_socket(sa->sa_family, &s);
    if (rc < 0) return rc;
    BOOL yes = TRUE;
    DWORD one = 1;
    /* Windows' SO_REUSEADDR lets another socket steal the port; exclusive use
     * is the safe default for a server (TIME_WAIT does not block a rebind on
     * Windows anyway). Not fatal if the stack does not know the option. */
    setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&yes, sizeof yes);
    if (sa->sa_family == AF_INET6)
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&one, sizeof one);
    if (cond_err) *cond_err = 0;
    if (cond_accept) {
        /* Must precede listen(): afterwards it fails with WSAEINVAL. */
        if (setsockopt(s, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (const char *)&one, sizeof one) != 0) {
            int e = sock_last_error();
            if (cond_err) *cond_err = e;
        }
    }
    if (bind(s, sa, len) != 0 || listen(s, backlog) != 0) {
        rc = sock_last_error();
        closesocket(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sock_open_stream(int family, sock_t *out)
{
    sock_t s = INVALID_SOCKET; /* set by new_socket on success */
    int rc = new_socket(family, &s);
    if (rc < 0) return rc;
    rc = sock_set_nonblock(s);
    if (rc < 0) {
        closesocket(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sock_bind(sock_t s, const struct sockaddr *sa, socklen_t len)
{
    return bind(s, sa, len) == 0 ? 0 : sock_last_error();
}

int sock_local_addr(sock_t s, struct sockaddr_storage *ss)
{
    int l = (int)sizeof *ss;
    return getsockname(s, (struct sockaddr *)ss, &l) == 0 ? 0 : sock_last_error();
}

int sock_peer_addr(sock_t s, struct sockaddr_storage *ss)
{
    int l = (int)sizeof *ss;
    return getpeername(s, (struct sockaddr *)ss, &l) == 0 ? 0 : sock_last_error();
}

int sock_set_nonblock(sock_t s)
{
    u_long on = 1;
    return ioctlsocket(s, FIONBIO, &on) == 0 ? 0 : sock_last_error();
}

int sock_set_nodelay(sock_t s)
{
    BOOL on = TRUE;
    return setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&on, sizeof on) == 0
               ? 0
               : sock_last_error();
}

int sock_recv(sock_t s, void *buf, size_t len)
{
    int n = recv(s, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    if (n != SOCKET_ERROR) return n;
    return sock_last_error(); /* WSAEWOULDBLOCK -> PC_EAGAIN */
}

int sock_sendv(sock_t s, const pc_buf_t *bufs, unsigned n)
{
    DWORD sent = 0;
    /* pc_buf_t has the WSABUF layout (portcullis.h) */
    if (WSASend(s, (WSABUF *)(uintptr_t)bufs, n, &sent, 0, NULL, NULL) == 0)
        return sent > INT_MAX ? INT_MAX : (int)sent;
    return sock_last_error();
}

int sock_shutdown_write(sock_t s)
{
    return shutdown(s, SD_SEND) == 0 ? 0 : sock_last_error();
}

void sock_unblock_accept(sock_t s)
{
    /* Closing the listening socket makes a WSAAccept blocked on it return
     * (WSAEINTR or WSAENOTSOCK). The caller forgets the handle. */
    closesocket(s);
}

void sock_close(sock_t s)
{
    closesocket(s);
}

void sock_close_reset(sock_t s)
{
    struct linger l;
    l.l_onoff = 1;
    l.l_linger = 0;
    setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&l, sizeof l);
    closesocket(s);
}
