/* SPDX-License-Identifier: MIT */
/* Winsock socket primitives (sock.h). The translation of Windows error codes
 * to PC_E* codes is in error_win.c.
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

int sock_sendv(sock_t s, const pc_buf_t *bufs, unsigned n, int more)
{
    (void)more; /* Winsock has no MSG_MORE */
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
