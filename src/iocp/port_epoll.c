/* SPDX-License-Identifier: MIT */
/* epoll backend: the completion model emulated over per-worker edge-triggered
 * epoll loops. Each queue is one epoll instance serviced by one worker, so a
 * socket's operations start and complete on one thread without locks. A
 * synchronous result is staged on the queue's ready list and reported by the
 * next port_wait, never inside the call that started the operation.
 * Cross-thread posts go through a mutex-protected list and an eventfd. */
#include "port.h"
#include "post_list.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errno_map.h"
#include "core/log.h"
#include "core/thread.h"

enum {
    EP_RD_READY = 1u << 0, /* an EPOLLIN edge arrived while no recv was pending */
    EP_ATTACHED = 1u << 1,
};

#define EP_EVENTS 256

typedef struct epq_s {
    int epfd;
    post_list_t posts; /* cross-thread posts and their eventfd */
    op_fifo_t ready;   /* owner thread only */
    struct epoll_event events[EP_EVENTS];
} epq_t;

typedef struct port_epoll_s {
    port_t base;
    epq_t *qs;
} port_epoll_t;

static PC_THREAD_LOCAL epq_t *tls_q; /* the queue whose worker this thread is */

static void ready_push(epq_t *q, op_t *op, int status, size_t bytes)
{
    op->res_status = status;
    op->res_bytes = (uint32_t)bytes;
    op->res_data = NULL;
    op_fifo_push(&q->ready, op);
}

static epq_t *sock_q(port_t *p, port_sock_t *s)
{
    return &((port_epoll_t *)p)->qs[s->q];
}

static int ep_attach(port_t *p, port_sock_t *s)
{
    epq_t *q = sock_q(p, s);
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = s;
    s->rd = s->wr = NULL;
    s->backend_flags = 0;
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) return sock_last_error();
    s->backend_flags |= EP_ATTACHED;
    return 0;
}

static int ep_recv(port_t *p, port_sock_t *s, op_t *op)
{
    epq_t *q = sock_q(p, s);
    op->kind = OP_RECV;
    op->busy = 1;
    if (s->backend_flags & EP_RD_READY) {
        s->backend_flags &= ~EP_RD_READY;
        ready_push(q, op, 0, 0);
    } else {
        s->rd = op;
    }
    return 0;
}

/* Write as much of op's gather list as the socket takes. Returns 1 when the
 * op is finished (all sent or error staged), 0 when it must wait. */
static int ep_try_send(epq_t *q, port_sock_t *s, op_t *op)
{
    while (op->nbufs > 0) {
        int w = sock_sendv(s->fd, op->bufs, op->nbufs, op->fin_next);
        if (w == PC_EAGAIN) return 0;
        if (w < 0) {
            ready_push(q, op, w, op->res_bytes);
            return 1;
        }
        port_send_advance(op, (size_t)w);
    }
    ready_push(q, op, 0, op->res_bytes);
    return 1;
}

static int ep_send(port_t *p, port_sock_t *s, op_t *op, pc_buf_t *bufs, unsigned n)
{
    epq_t *q = sock_q(p, s);
    op->kind = OP_SEND;
    op->busy = 1;
    op->bufs = bufs;
    op->nbufs = n;
    op->res_bytes = 0;
    if (!ep_try_send(q, s, op)) s->wr = op;
    return 0;
}

static int ep_connect(port_t *p, port_sock_t *s, op_t *op, const struct sockaddr *sa, socklen_t len)
{
    epq_t *q = sock_q(p, s);
    op->kind = OP_CONNECT;
    op->busy = 1;
    op->res_bytes = 0;
    if (connect(s->fd, sa, len) == 0) {
        ready_push(q, op, 0, 0);
    } else if (errno == EINPROGRESS) {
        s->wr = op;
    } else {
        ready_push(q, op, sock_last_error(), 0);
    }
    return 0;
}

static int ep_cancel(port_t *p, port_sock_t *s, op_t *op)
{
    epq_t *q = sock_q(p, s);
    if (s->rd == op) {
        s->rd = NULL;
        ready_push(q, op, PC_ECANCELED, 0);
    } else if (s->wr == op) {
        s->wr = NULL;
        ready_push(q, op, PC_ECANCELED, op->res_bytes);
    }
    return 0;
}

static void ep_detach(port_t *p, port_sock_t *s)
{
    epq_t *q = sock_q(p, s);
    if (s->backend_flags & EP_ATTACHED) epoll_ctl(q->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    s->backend_flags = 0;
    if (s->rd) ep_cancel(p, s, s->rd);
    if (s->wr) ep_cancel(p, s, s->wr);
}

static int ep_post(port_t *p, int qi, op_t *op)
{
    port_epoll_t *ep = (port_epoll_t *)p;
    epq_t *q = &ep->qs[qi];
    op->kind = OP_POST;
    op->busy = 1;
    if (tls_q == q) { /* posting to ourselves: no lock, no syscall */
        ready_push(q, op, 0, 0);
        return 0;
    }
    post_list_push(&q->posts, op);
    return 0;
}

static void take_posted(epq_t *q)
{
    op_t *h = post_list_take(&q->posts);
    while (h) {
        op_t *n = h->next;
        ready_push(q, h, 0, 0);
        h = n;
    }
}

static void on_sock_event(epq_t *q, port_sock_t *s, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (s->rd) {
            op_t *op = s->rd;
            s->rd = NULL;
            ready_push(q, op, 0, 0);
        } else {
            s->backend_flags |= EP_RD_READY;
        }
    }
    if ((ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && s->wr) {
        op_t *op = s->wr;
        if (op->kind == OP_CONNECT) {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err == EINPROGRESS) return;
            s->wr = NULL;
            ready_push(q, op, pc__from_errno(err), 0);
        } else if (ep_try_send(q, s, op)) {
            s->wr = NULL;
        }
    }
}

static int ep_wait(port_t *p, int qi, completion_t *out, int max, int timeout_ms, int *drained)
{
    port_epoll_t *ep = (port_epoll_t *)p;
    epq_t *q = &ep->qs[qi];
    tls_q = q;
    take_posted(q);
    int n = epoll_wait(q->epfd, q->events, EP_EVENTS, q->ready.head ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR) return sock_last_error();
    for (int i = 0; i < n; i++) {
        struct epoll_event *e = &q->events[i];
        if (e->data.ptr == q) {
            uint64_t v;
            ssize_t r = read(q->posts.evfd, &v, sizeof v);
            (void)r;
            post_list_woken(&q->posts);
            take_posted(q);
        } else {
            on_sock_event(q, e->data.ptr, e->events);
        }
    }
    int k = op_fifo_drain(&q->ready, out, max);
    *drained = n >= 0 && n < EP_EVENTS;
    return k;
}

static int ep_staged(port_t *p, int qi)
{
    return ((port_epoll_t *)p)->qs[qi].ready.head != NULL;
}

static void ep_close(port_t *p)
{
    port_epoll_t *ep = (port_epoll_t *)p;
    for (int i = 0; i < p->nqueues; i++) {
        epq_t *q = &ep->qs[i];
        if (q->epfd >= 0) close(q->epfd);
        if (q->posts.evfd >= 0) close(q->posts.evfd);
        post_list_destroy(&q->posts);
    }
    pc__free(ep->qs);
    pc__free(ep);
}

static const port_vtbl_t ep_vtbl = {
    .name = "epoll",
    .id = PC_BACKEND_EPOLL,
    .close = ep_close,
    .attach = ep_attach,
    .recv = ep_recv,
    .recv_done = NULL,
    .send = ep_send,
    .connect = ep_connect,
    .cancel = ep_cancel,
    .detach = ep_detach,
    .post = ep_post,
    .wait = ep_wait,
    .staged = ep_staged,
};

int port_epoll_open(port_t **out, int nqueues)
{
    port_epoll_t *ep = pc__calloc(1, sizeof *ep);
    if (!ep) return PC_ENOMEM;
    ep->qs = pc__calloc((size_t)nqueues, sizeof *ep->qs);
    if (!ep->qs) {
        pc__free(ep);
        return PC_ENOMEM;
    }
    ep->base.vt = &ep_vtbl;
    ep->base.nqueues = nqueues;
    ep->base.single_owner = 1;
    for (int i = 0; i < nqueues; i++) {
        epq_t *q = &ep->qs[i];
        q->epfd = q->posts.evfd = -1;
        post_list_init(&q->posts);
    }
    for (int i = 0; i < nqueues; i++) {
        epq_t *q = &ep->qs[i];
        q->epfd = epoll_create1(EPOLL_CLOEXEC);
        q->posts.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = q};
        if (q->epfd < 0 || q->posts.evfd < 0 ||
            epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->posts.evfd, &ev) != 0) {
            int e = sock_last_error();
            ep->base.nqueues = i + 1;
            ep_close(&ep->base);
            return e;
        }
    }
    *out = &ep->base;
    return 0;
}
