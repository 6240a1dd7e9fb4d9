/* SPDX-License-Identifier: MIT */
/* The Linux accept loop. Linux has no pre-handshake hook in accept: the
 * listener's kernel filter (kfilter_posix.c), when a tier is in force, drops
 * denied SYNs before the handshake; the verdict pipeline runs right after
 * accept4 as the second stage, and a rejected connection is closed with a
 * reset (SO_LINGER 0). "Defer" means: stop taking connections
 * off the backlog (the kernel queue holds them) until capacity frees or
 * defer_timeout_ms passes; the connection that is then still over capacity
 * is rejected. One pause for one connection: the connections queued during a
 * pause are deferred (counted once each, as the pause sees them), and the
 * first of them, still over capacity after a pause that timed out, is
 * rejected at once rather than held for a second defer_timeout_ms. A pause
 * that ended with nothing queued defers nobody: the next connection is
 * taken as it comes and, still over capacity, held defer_timeout_ms of its
 * own (accept_hold_deferred).
 *
 * Batching (cfg.accept_batch_us): the listener is non-blocking and the thread
 * waits in poll() for a connection, then takes the backlog until it is
 * empty. When that drain took ACCEPT_BATCH_TAKEN (2) or more, with
 * ACCEPT_BATCH_OPEN (32) or more connections open, connections are piling
 * up (the server is busy): the thread sleeps accept_batch_us and takes what
 * gathered meanwhile, rather than waking per connection. A lone connection
 * finds the thread in poll() and is taken at once.
 *
 * Data wait (cfg.accept_data_wait_s): TCP_DEFER_ACCEPT on the listener; the
 * kernel queues a connection for accept4 once its first bytes arrived (or
 * the wait ended), so the loop below is the same with or without it. */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/clock.h"
#include "core/errno_map.h"
#include "core/log.h"

int accept_data_wait_available(void)
{
    return 1;
}

/* cfg.accept_data_wait_s on the listener: TCP_DEFER_ACCEPT, and what the
 * kernel made of it (it rounds the seconds up to its SYN-ACK retransmission
 * schedule). Refused (no kernel has refused it on a TCP socket), the
 * listener takes connections as their handshake completes; said once per
 * server, and the stats report 0. */
static void set_data_wait(listener_t *l, sock_t fd)
{
    pc_server_t *s = l->srv;
    unsigned want = s->cfg.accept_data_wait_s;
    l->data_wait_s = 0;
    if (!want) return;
    int v = (int)want;
    socklen_t len = sizeof v;
    const char *why = NULL;
    if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, sizeof v) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &len) != 0)
        why = strerror(errno);
    else if (v <= 0)
        why = "the kernel reads it back as 0";
    if (why) {
        if (!s->data_wait_logged)
            PC_LOGW("accept_data_wait_s=%u: TCP_DEFER_ACCEPT refused (%s); connections are "
                    "accepted as their handshake completes",
                    want, why);
        s->data_wait_logged = 1;
        return;
    }
    l->data_wait_s = (unsigned)v;
    if (l->data_wait_s != want)
        PC_LOGD("accept data wait: %u s asked, %u s in force (the kernel's rounding)", want,
                l->data_wait_s);
}

/* Between bind and listen: the kernel filter is in place before any SYN,
 * the data wait is set, and with accept batching the listener is
 * non-blocking. A failure here is a failure to listen (sock_listen_with
 * closes the socket). kf_lock is held (accept_listener_open). */
static int prepare_listener(sock_t fd, void *ud)
{
    listener_t *l = ud;
    pc_server_t *s = l->srv;
    set_data_wait(l, fd);
    if (accept_batch_us(s)) {
        int rc = sock_set_nonblock(fd);
        if (rc < 0) return rc;
    }
    return kfilter_attach(s, l, fd, filter_rules_peek(s->filter));
}

int accept_listener_open(pc_server_t *s, listener_t *l)
{
    int want = s->cfg.conditional_accept == PC_COND_ACCEPT_ON;
    l->cond_err = want ? PC_ENOTSUP : 0;
    int rc = sock_listen_with((struct sockaddr *)&l->addr, l->addrlen, s->cfg.backlog,
                              prepare_listener, l, &l->fd);
    if (rc < 0) {
        kfilter_detach(s, l); /* an eBPF tier attached before listen failed */
        return rc;
    }
    l->mode = PC_ACCEPT_MODE_POST_HANDSHAKE;
    char name[64];
    listener_name(l->fd, (struct sockaddr *)&l->addr, name, sizeof name);
    if (want)
        PC_LOGI("listener %s: conditional accept not available on this platform; "
                "post-handshake mode (rejects are reset after accept)",
                name);
    else
        PC_LOGD("listener %s: conditional accept: post-handshake mode", name);
    return 0;
}

void accept_listener_wake(listener_t *l)
{
    if (l->fd != SOCK_INVALID) sock_unblock_accept(l->fd);
}

void accept_listener_close(listener_t *l)
{
    if (l->fd != SOCK_INVALID) sock_close(l->fd);
}

#define ACCEPT_BATCH_TAKEN 2  /* connections in one drain, */
#define ACCEPT_BATCH_OPEN  32 /* with this many open: the server is busy */

unsigned accept_batch_us(const pc_server_t *s)
{
    return s->cfg.accept_batch_us;
}

/* The backlog is empty after a drain that took `got` connections: sleep
 * accept_batch_us when the server is busy (fewer open connections are a few
 * clients reconnecting in turn, which would only wait for each other), else
 * wait in poll() for the next one (a stop's shutdown of the listener wakes
 * it). Returns 1 after poll(): a connection arrived at an empty backlog. */
static int accept_idle(listener_t *l, unsigned got)
{
    pc_server_t *s = l->srv;
    if (got >= ACCEPT_BATCH_TAKEN && atomic_load(&s->active) >= ACCEPT_BATCH_OPEN) {
        counter_add(&s->accept_batch_waits, 1);
        struct timespec ts = {0, (long)accept_batch_us(s) * 1000}; /* < 1 s */
        nanosleep(&ts, NULL);
        return 0;
    }
    struct pollfd pf = {l->fd, POLLIN, 0};
    (void)poll(&pf, 1, -1);
    return 1;
}

/* TCP_INFO on a listener reports its accept queue's length in tcpi_unacked;
 * failing that, poll() tells whether there is one. */
unsigned accept_backlog_queued(listener_t *l)
{
    sock_t fd = l->fd;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(struct tcp_info, tcpi_unacked) + sizeof ti.tcpi_unacked &&
        ti.tcpi_state == TCP_LISTEN)
        return ti.tcpi_unacked;
    struct pollfd pf = {fd, POLLIN, 0};
    return poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN) ? 1u : 0u;
}

static int is_transient(int e)
{
    return e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM || e == ENETDOWN ||
           e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
           e == EOPNOTSUPP || e == ENETUNREACH || e == EAGAIN;
}

void accept_thread_main(void *arg)
{
    listener_t *l = arg;
    pc_server_t *s = l->srv;
    accept_backoff_t bo = {0, 0, 0};
    int batch = accept_batch_us(s) != 0;
    unsigned got = 0; /* connections taken in this drain of the backlog */
    int arrived = 0;  /* poll() saw a connection: take it, as a blocking
                       * accept would have, without a second capacity wait */
    accept_pause_t capwait = {0, 0};
    while (!atomic_load(&l->stopping)) {
        if (s->cfg.at_capacity == PC_CAPACITY_DEFER && !arrived) accept_wait_capacity(l, &capwait);
        arrived = 0;
        if (atomic_load(&l->stopping)) break;

        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (atomic_load(&l->stopping)) break;
            if (batch && (e == EAGAIN || e == EWOULDBLOCK)) {
                capwait.held = 0; /* the backlog is empty */
                arrived = accept_idle(l, got);
                got = 0;
                continue;
            }
            if (is_transient(e)) continue;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: keep serving, back off */
            accept_failed(l, &bo, pc__from_errno(e), e);
            continue;
        }
        bo.delay_ms = 0;
        got++;
        uint64_t dl = accept_pause_take(&capwait); /* 0: not deferred yet */

        int step = -1;
        pc_verdict_t v =
            accept_decide(l, (struct sockaddr *)&peer, (struct sockaddr *)&l->addr, &step, 0);
        if (v == PC_DEFER) v = accept_hold_deferred(l, (struct sockaddr *)&peer, &step, dl);
        if (v != PC_ACCEPT) {
            sock_close_reset(fd);
            continue;
        }
        if (conn_start_accepted(s, l, fd, &peer) < 0) {
            accept_undo(l);
            counter_add(&s->accept_errors, 1);
            sock_close_reset(fd);
            continue;
        }
        kfilter_source_changed(s, (struct sockaddr *)&peer);
    }
}
