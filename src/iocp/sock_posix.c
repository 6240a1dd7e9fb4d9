/* SPDX-License-Identifier: MIT */
/* POSIX (Linux) socket primitives. */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/errno_map.h"

int sock_lib_init(void)
{
    return 0; /* sends use MSG_NOSIGNAL, so SIGPIPE needs no global change */
}

void sock_lib_cleanup(void) {}

int sock_last_error(void)
{
    return pc__from_errno(errno);
}

int sock_listen(const struct sockaddr *sa, socklen_t len, int backlog, int cond_accept,
                int *cond_err, sock_t *out)
{
    if (cond_err) *cond_err = cond_accept ? PC_ENOTSUP : 0;
    return sock_listen_with(sa, len, backlog, NULL, NULL, out);
}

int sock_listen_with(const struct sockaddr *sa, socklen_t len, int backlog,
                     int (*before_listen)(sock_t fd, void *ud), void *ud, sock_t *out)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sock_last_error();
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited by accept */
    int rc = bind(fd, sa, len) == 0 ? 0 : sock_last_error();
    if (rc == 0 && before_listen) rc = before_listen(fd, ud);
    if (rc == 0 && listen(fd, backlog) != 0) rc = sock_last_error();
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int sock_open_stream(int family, sock_t *out)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sock_last_error();
    *out = fd;
    return 0;
}

int sock_bind(sock_t s, const struct sockaddr *sa, socklen_t len)
{
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* the port is chosen at connect, for the whole 4-tuple: a source then
     * holds more connections than the ephemeral range when their peers
     * differ, and reuses ports whose TIME_WAIT a connect may take over;
     * refused (a kernel before 4.2) it is chosen here, as before */
    int one = 1;
    (void)setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    return bind(s, sa, len) == 0 ? 0 : sock_last_error();
}

int sock_local_addr(sock_t s, struct sockaddr_storage *ss)
{
    socklen_t l = sizeof *ss;
    return getsockname(s, (struct sockaddr *)ss, &l) == 0 ? 0 : sock_last_error();
}

int sock_peer_addr(sock_t s, struct sockaddr_storage *ss)
{
    socklen_t l = sizeof *ss;
    return getpeername(s, (struct sockaddr *)ss, &l) == 0 ? 0 : sock_last_error();
}

int sock_set_nonblock(sock_t s)
{
    int fl = fcntl(s, F_GETFL);
    if (fl < 0 || fcntl(s, F_SETFL, fl | O_NONBLOCK) < 0) return sock_last_error();
    return 0;
}

int sock_set_nodelay(sock_t s)
{
    int one = 1;
    return setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? 0 : sock_last_error();
}

int sock_recv(sock_t s, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(s, buf, len, 0);
        if (n >= 0) return (int)n;
        if (errno == EINTR) continue;
        return sock_last_error();
    }
}

int sock_sendv(sock_t s, const pc_buf_t *bufs, unsigned n, int more)
{
    struct msghdr m = {0};
    m.msg_iov = (struct iovec *)(void *)bufs; /* pc_buf_t has the iovec layout */
    m.msg_iovlen = n;
    for (;;) {
        ssize_t w = sendmsg(s, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (w >= 0) return (int)w;
        if (errno == EINTR) continue;
        return sock_last_error();
    }
}

int sock_shutdown_write(sock_t s)
{
    return shutdown(s, SHUT_WR) == 0 ? 0 : sock_last_error();
}

void sock_unblock_accept(sock_t s)
{
    /* shutdown() on a listening socket makes a blocked accept() return
     * EINVAL on Linux; the fd is closed after the accept thread is joined. */
    shutdown(s, SHUT_RDWR);
}

void sock_close(sock_t s)
{
    close(s);
}

void sock_close_reset(sock_t s)
{
    struct linger l = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(s);
}
