/* SPDX-License-Identifier: MIT */
/* The backend seam: a completion port. Shaped around completions, not
 * readiness: the shared server and connection code starts operations and is
 * told "operation X finished with status S and N bytes". Backends never call
 * user code. Implemented by port_epoll.c, port_uring.c (Linux) and
 * port_win.c (IOCP).
 *
 * Contract every backend keeps:
 * - Every operation started with port_recv / port_send / port_connect /
 *   port_post completes exactly once, through port_wait, on queue q (on
 *   Windows: on any worker, all workers share one port). Operations pending
 *   when the socket is detached complete with PC_ECANCELED (or their real
 *   result if they finished first). Nothing completes inside the call that
 *   started it: a synchronous success is queued and reported by port_wait.
 * - An op_t is owned by the backend from the start call until its completion
 *   is returned by port_wait; the caller keeps it (and the buffers it points
 *   at) alive until then.
 * - Queues: a port has nqueues queues, one per worker. On Linux each queue is
 *   its own event loop and a socket attached to queue q completes only there,
 *   so a connection is single-threaded; port_recv/send/connect/cancel/detach
 *   for a socket are called only from its queue's worker. On Windows there is
 *   one completion port and q only selects nothing; those calls may come from
 *   any worker (the shared code serialises per connection).
 */
#ifndef PC_IOCP_PORT_H
#define PC_IOCP_PORT_H

#include <stdint.h>
#include "portcullis.h"
#include "sock.h"

typedef enum op_kind_e {
    OP_NONE = 0,
    OP_RECV,      /* wait until the socket is readable (zero-byte read) */
    OP_SEND,      /* send all of a gather list */
    OP_CONNECT,   /* outbound connect */
    OP_POST,      /* posted by port_post */
    OP_SEND_WAIT, /* io_uring: a send waiting for POLLOUT (the kernel said EAGAIN) */
} op_kind_t;

typedef struct op_s {
#ifdef _WIN32
    OVERLAPPED ov; /* first member: recovered from the OVERLAPPED* */
#endif
    uint8_t kind;      /* op_kind_t, set by the backend's start call */
    uint8_t tag;       /* the shared code's meaning (server.h TAG_*); with it the
                        * shared code finds the op's owner (container_of) */
    uint8_t busy;      /* 1 from start until completion (debug / asserts) */
    uint8_t fin_next;  /* send: the connection's last bytes, its FIN follows the
                        * completion: Linux sends them with MSG_MORE, so that
                        * the FIN goes in the same segment (set by the caller) */
    uint32_t nbufs;    /* send: entries left in bufs */
    struct op_s *next; /* backend-private queue link */
    /* backend-private result staging. Once port_wait has returned the op's
     * completion, the op is the caller's again, these fields and next
     * included (the strand parks deferred completions in them). An op moves
     * at most UINT32_MAX bytes. */
    int res_status;
    uint32_t res_bytes;
    union {
        /* send, until its result is staged: the gather list, owned by the
         * caller; backends advance it in place on partial writes */
        pc_buf_t *bufs;
        /* from the staging of the result on (the gather list is done by
         * then): sharing the place keeps op_t at 32 bytes on Linux, and
         * every idle connection holds one (its receive) */
        void *res_data;
    };
} op_t;

/* Account n bytes a send took from op's gather list: add them to
 * op->res_bytes, drop the buffers they finish and trim a partly sent one, so
 * that op->bufs / op->nbufs hold what is left (nbufs 0: all sent). Each
 * backend's send path calls it after a write, short or not. */
static inline void port_send_advance(op_t *op, size_t n)
{
    op->res_bytes += (uint32_t)n;
    while (op->nbufs > 0 && n >= op->bufs[0].len) {
        n -= op->bufs[0].len;
        op->bufs++;
        op->nbufs--;
    }
    if (op->nbufs > 0 && n) {
        op->bufs[0].base = (char *)op->bufs[0].base + n;
        op->bufs[0].len -= (unsigned long)n; /* < len: fits its type (unsigned long or size_t) */
    }
}

/* A FIFO of ops linked through op->next: a backend's results waiting for
 * port_wait, a strand's parked completions. Not thread-safe. */
typedef struct op_fifo_s {
    op_t *head, *tail;
} op_fifo_t;

static inline void op_fifo_push(op_fifo_t *f, op_t *op)
{
    op->next = NULL;
    if (f->tail)
        f->tail->next = op;
    else
        f->head = op;
    f->tail = op;
}

/* The oldest op, unlinked, or NULL. */
static inline op_t *op_fifo_pop(op_fifo_t *f)
{
    op_t *op = f->head;
    if (op) {
        f->head = op->next;
        if (!f->head) f->tail = NULL;
    }
    return op;
}

/* One finished operation. status: 0 or a PC_E* code. bytes: bytes
 * transferred (send: all of them on success; recv: 0 = "readable", the
 * shared code then reads with sock_recv; a backend that receives into its
 * own buffers reports them in data/bytes and gets them back through
 * port_recv_done). */
typedef struct completion_s {
    op_t *op;
    int status;
    size_t bytes;
    void *data;
} completion_t;

/* Pop up to max ops of f into completions (results from op->res_*, which
 * whoever pushed the op has set), marking them no longer busy. Returns how
 * many. */
static inline int op_fifo_drain(op_fifo_t *f, completion_t *out, int max)
{
    int k = 0;
    while (k < max && f->head) {
        op_t *op = op_fifo_pop(f);
        op->busy = 0;
        out[k].op = op;
        out[k].status = op->res_status;
        out[k].bytes = op->res_bytes;
        out[k].data = op->res_data;
        k++;
    }
    return k;
}

/* Per-socket backend state, embedded in the connection (so in every idle
 * connection: 32 bytes on Linux, where fd, q and the flags share 8). */
typedef struct port_sock_s {
    sock_t fd;
    uint16_t q;             /* queue (worker) the socket completes on */
    uint16_t backend_flags; /* backend-private flags */
    op_t *rd;               /* pending OP_RECV (epoll: waiting for EPOLLIN) */
    op_t *wr;               /* pending OP_SEND/OP_CONNECT (epoll: waiting for EPOLLOUT) */
    void *backend_priv;     /* backend-private pointer */
} port_sock_t;

typedef struct port_s port_t;

typedef struct port_vtbl_s {
    const char *name;
    pc_backend_t id;
    void (*close)(port_t *p);
    int (*attach)(port_t *p, port_sock_t *s);
    int (*recv)(port_t *p, port_sock_t *s, op_t *op);
    void (*recv_done)(port_t *p, port_sock_t *s, void *data);
    int (*send)(port_t *p, port_sock_t *s, op_t *op, pc_buf_t *bufs, unsigned n);
    int (*connect)(port_t *p, port_sock_t *s, op_t *op, const struct sockaddr *sa, socklen_t len);
    int (*cancel)(port_t *p, port_sock_t *s, op_t *op);
    void (*detach)(port_t *p, port_sock_t *s);
    int (*post)(port_t *p, int q, op_t *op);
    int (*wait)(port_t *p, int q, completion_t *out, int max, int timeout_ms, int *drained);
    int (*input_held)(port_t *p, port_sock_t *s, op_t *rd); /* NULL: never */
    int (*staged)(port_t *p, int q);
    void (*leave)(port_t *p, int q); /* NULL: nothing to do */
} port_vtbl_t;

struct port_s {
    const port_vtbl_t *vt;
    int nqueues;
    /* 1 when every socket completes on one queue only (Linux): the shared
     * code may skip per-connection strand locking. */
    int single_owner;
    /* 1 when OP_RECV completes with data the backend received into its own
     * buffers (completion.data, returned with port_recv_done). The backend
     * then holds received bytes in order, so the shared code reads the
     * socket itself only after a completion with data NULL and status 0
     * (EOF, or the backend ran out of buffers), and continues reading with
     * port_recv, never with a post of its recv op. */
    int recv_data;
};

/* Open a port with nqueues queues using backend want. AUTO is IOCP on
 * Windows; on Linux io_uring when the kernel offers it, else epoll (port.c
 * says why); for AUTO the reason for the choice is written to why (whylen
 * bytes, NUL-terminated), otherwise why is left alone. Returns 0, PC_ENOSYS
 * (backend not built or refused by the kernel), PC_ENOMEM, ... */
int port_open(port_t **out, pc_backend_t want, int nqueues, char *why, size_t whylen);

/* Backend constructors (each file provides its own). */
int port_epoll_open(port_t **out, int nqueues);
int port_uring_open(port_t **out, int nqueues);
int port_win_open(port_t **out, int nqueues);
/* io_uring probe: 0 if usable, else the reason (PC_ENOSYS, PC_EPERM, ...). */
int port_uring_probe(void);

/* Thin inline dispatch. */
static inline void port_close(port_t *p)
{
    p->vt->close(p);
}
/* Associate s->fd with the port on queue s->q. */
static inline int port_attach(port_t *p, port_sock_t *s)
{
    return p->vt->attach(p, s);
}
/* Completes when the socket is readable, at EOF or in error (bytes 0), or
 * with received data where the backend supplies buffers (p->recv_data:
 * completion.data/bytes, one buffer per completion, in stream order). */
static inline int port_recv(port_t *p, port_sock_t *s, op_t *op)
{
    return p->vt->recv(p, s, op);
}
/* Give back a buffer the backend reported in completion.data. */
static inline void port_recv_done(port_t *p, port_sock_t *s, void *data)
{
    if (p->vt->recv_done) p->vt->recv_done(p, s, data);
}
/* Completes when all bytes of bufs are sent (bytes = total) or on error. */
static inline int port_send(port_t *p, port_sock_t *s, op_t *op, pc_buf_t *bufs, unsigned n)
{
    return p->vt->send(p, s, op, bufs, n);
}
static inline int port_connect(port_t *p, port_sock_t *s, op_t *op, const struct sockaddr *sa,
                               socklen_t len)
{
    return p->vt->connect(p, s, op, sa, len);
}
/* Cancel exactly this pending op: it completes with PC_ECANCELED (or its
 * result, if it finished first). */
static inline int port_cancel(port_t *p, port_sock_t *s, op_t *op)
{
    return p->vt->cancel(p, s, op);
}
/* Forget the socket before the caller closes it; pending ops complete with
 * PC_ECANCELED. The fd itself is closed by the caller afterwards. */
static inline void port_detach(port_t *p, port_sock_t *s)
{
    p->vt->detach(p, s);
}
/* Queue op for completion on queue q (status 0, bytes 0). Any thread. */
static inline int port_post(port_t *p, int q, op_t *op)
{
    return p->vt->post(p, q, op);
}
/* Wait up to timeout_ms (-1 = forever, 0 = poll) for completions on queue q.
 * Returns the number written to out (0 on timeout) or a PC_E* code. Only the
 * queue's worker calls it. *drained is set to 1 when this call took from the
 * kernel everything that had completed by its return; 0 when the kernel may
 * hold more (a full batch, the kernel not entered, the wait failed). What
 * was taken but did not fit in out stays staged (port_staged). The worker
 * judges peer deadlines by both. */
static inline int port_wait(port_t *p, int q, completion_t *out, int max, int timeout_ms,
                            int *drained)
{
    *drained = 0;
    return p->vt->wait(p, q, out, max, timeout_ms, drained);
}
/* Has queue q results staged for its next wait (its worker's callbacks
 * started operations that completed at once)? Only the queue's worker. */
static inline int port_staged(port_t *p, int q)
{
    return p->vt->staged(p, q);
}
/* Queue q's worker is leaving (its last port call, on its own thread,
 * before port_close runs on another): drop what the backend tied to that
 * thread. */
static inline void port_leave(port_t *p, int q)
{
    if (p->vt->leave) p->vt->leave(p, q);
}
/* Does the backend hold input for s that the strand has not been given:
 * its receive rd (pending from the strand's view) completed but its result
 * not yet returned by a wait? Only a shared port (IOCP) needs it: there the
 * completion may sit in the port or in a batch another worker has not
 * dispatched. On Linux a queue's completions reach only its own worker,
 * whose seen_ms covers them (io_uring's held buffers included: the reader
 * is handed the next one as it finishes one, which stages it). A peer
 * deadline is not judged while it holds. The strand only. */
static inline int port_input_held(port_t *p, port_sock_t *s, op_t *rd)
{
    return p->vt->input_held ? p->vt->input_held(p, s, rd) : 0;
}

#endif
