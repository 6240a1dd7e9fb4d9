/* SPDX-License-Identifier: MIT */
#include "shim.h"

#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#endif

void shim_init(void)
{
#ifdef _WIN32
    WSADATA d;
    WSAStartup(MAKEWORD(2, 2), &d);
#endif
}

void shim_set_timeout(shim_sock_t s, int timeout_ms)
{
#ifdef _WIN32
    DWORD tv = (DWORD)timeout_ms;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&tv, sizeof tv);
#else
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
#endif
}

void shim_set_rcvbuf(shim_sock_t s, int bytes)
{
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, (const char *)&bytes, sizeof bytes);
}

/* Did this thread's last failed shim_connect fail because the peer reset
 * it? */
static _Thread_local int g_connect_reset;

int shim_connect_was_reset(void)
{
    return g_connect_reset;
}

shim_sock_t shim_listen(int backlog, int *port)
{
    shim_sock_t l = socket(AF_INET, SOCK_STREAM, 0);
    if (l == SHIM_INVALID) return SHIM_INVALID;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, backlog) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        shim_close(l);
        return SHIM_INVALID;
    }
    *port = ntohs(a.sin_port);
    return l;
}

shim_sock_t shim_connect(const char *ip, int port, const char *src, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len;
    g_connect_reset = 0;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) return SHIM_INVALID;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) return SHIM_INVALID;
        len = sizeof *a;
    }
    shim_sock_t s = socket(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
    if (s == SHIM_INVALID) return SHIM_INVALID;
    if (src) {
        struct sockaddr_in b;
        memset(&b, 0, sizeof b);
        b.sin_family = AF_INET;
        if (inet_pton(AF_INET, src, &b.sin_addr) != 1 ||
            bind(s, (struct sockaddr *)&b, sizeof b) != 0) {
            shim_close(s);
            return SHIM_INVALID;
        }
    }
    shim_set_timeout(s, timeout_ms);
    if (connect(s, (struct sockaddr *)&ss, len) != 0) {
#ifdef _WIN32
        int e = WSAGetLastError();
        g_connect_reset = e == WSAECONNRESET || e == WSAECONNABORTED;
#else
        g_connect_reset = errno == ECONNRESET || errno == ECONNABORTED;
#endif
        shim_close(s);
        return SHIM_INVALID;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    return s;
}

int shim_send_all(shim_sock_t s, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        int chunk = len > (1u << 20) ? (1 << 20) : (int)len;
#ifdef _WIN32
        int w = send(s, p, chunk, 0);
#else
        ssize_t w = send(s, p, (size_t)chunk, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
#endif
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int shim_recv_some(shim_sock_t s, void *buf, size_t len)
{
    int cap = len > (1u << 30) ? (1 << 30) : (int)len;
#ifdef _WIN32
    int n = recv(s, buf, cap, 0);
    if (n >= 0) return n;
    int e = WSAGetLastError();
    if (e == WSAECONNRESET || e == WSAECONNABORTED) return -1;
    if (e == WSAETIMEDOUT || e == WSAEWOULDBLOCK) return -2;
    return -3;
#else
    for (;;) {
        ssize_t n = recv(s, buf, (size_t)cap, 0);
        if (n >= 0) return (int)n;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -2;
        return -3;
    }
#endif
}

size_t shim_recv_exact(shim_sock_t s, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        int n = shim_recv_some(s, (char *)buf + got, len - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    return got;
}

int shim_wait_close(shim_sock_t s, size_t *nbytes)
{
    char buf[16384];
    size_t total = 0;
    for (;;) {
        int n = shim_recv_some(s, buf, sizeof buf);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (nbytes) *nbytes = total;
        if (n == 0) return 0;
        if (n == -1) return -1;
        if (n == -2) return -2;
        return -1;
    }
}

int shim_wait_reset(shim_sock_t s, size_t *nbytes)
{
    int rc = shim_wait_close(s, nbytes);
#ifdef _WIN32
    if (rc == 0 && shim_send_all(s, "?", 1) != 0) rc = -1;
#endif
    return rc;
}

void shim_close(shim_sock_t s)
{
#ifdef _WIN32
    closesocket(s);
#else
    close(s);
#endif
}

void shim_close_reset(shim_sock_t s)
{
    struct linger l;
    l.l_onoff = 1;
    l.l_linger = 0;
    setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&l, sizeof l);
    shim_close(s);
}

void shim_shutdown_write(shim_sock_t s)
{
#ifdef _WIN32
    shutdown(s, SD_SEND);
#else
    shutdown(s, SHUT_WR);
#endif
}

void shim_sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
#endif
}

uint64_t shim_now_ms(void)
{
#ifdef _WIN32
    return GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

uint64_t shim_process_cpu_ms(void)
{
#ifdef _WIN32
    FILETIME created, exited, kernel, user;
    if (!GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user)) abort();
    uint64_t k = ((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime;
    uint64_t u = ((uint64_t)user.dwHighDateTime << 32) | user.dwLowDateTime;
    return (k + u) / 10000; /* 100 ns units */
#else
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

int shim_have_ipv6(void)
{
    shim_sock_t s = socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP);
    if (s == SHIM_INVALID) return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    shim_close(s);
    return ok;
}

shim_sock_t shim_socket_on_port(int port, shim_sock_t c)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (c != SHIM_INVALID && getsockname(c, (struct sockaddr *)&me, &len) != 0) return SHIM_INVALID;
#ifdef _WIN32
    for (uintptr_t h = 4; h < (1u << 16); h += 4) { /* handle values are multiples of 4 */
        SOCKET s = (SOCKET)h;
#else
    for (int s = 3; s < (1 << 16); s++) {
#endif
        struct sockaddr_in local, peer;
        socklen_t ll = sizeof local, pl = sizeof peer;
        if (s == c || getsockname(s, (struct sockaddr *)&local, &ll) != 0 ||
            local.sin_family != AF_INET || ntohs(local.sin_port) != port)
            continue;
        int connected = getpeername(s, (struct sockaddr *)&peer, &pl) == 0;
        if (c == SHIM_INVALID ? !connected : connected && peer.sin_port == me.sin_port) return s;
    }
    return SHIM_INVALID;
}
