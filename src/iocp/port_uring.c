/* SPDX-License-Identifier: MIT */
/* io_uring backend: Linux's native completion port behind the seam.
 *
 * One ring per queue, created by port_open (on a helper thread, see
 * run_on_helper) with IORING_SETUP_R_DISABLED and enabled by the queue's
 * worker on its first port_wait, so that the worker becomes the ring's single
 * issuer (IORING_SETUP_SINGLE_ISSUER + DEFER_TASKRUN, falling back to
 * COOP_TASKRUN and then to a plain ring on older kernels). Every SQE a worker
 * prepares during a batch of callbacks is submitted by the next port_wait in
 * the same io_uring_enter that waits for completions: one system call per
 * loop iteration in the steady state.
 *
 * Receiving, two modes (docs/uring.md has the measurements):
 * - multishot (default when the kernel takes a provided-buffer ring): one
 *   multishot recv per socket picks buffers from the queue's buffer ring.
 *   Received buffers queue per socket (in kernel order) and are handed to
 *   the shared code one per port_recv completion (completion.data/bytes);
 *   port_recv_done gives them back. A socket whose reader is paused holds at
 *   most rx_high buffers (1/16 of the pool): then its multishot is
 *   cancelled and re-armed when the reader catches up. When the buffer ring
 *   is empty the kernel ends the multishot with ENOBUFS; that becomes a
 *   "readable" completion (data NULL, bytes 0) and the shared code reads into
 *   its own buffer, so buffer exhaustion costs speed, never correctness.
 * - poll: IORING_OP_POLL_ADD(POLLIN) as the zero-byte read of the seam.
 *
 * Sends: IORING_OP_SEND (one buffer) or SENDMSG (gather list) with
 * MSG_WAITALL, so the kernel itself retries short writes, and MSG_DONTWAIT:
 * without it a send whose POLLOUT arming found room at once was retried
 * blocking in an io-wq thread, where it waited for room (a peer that does
 * not read: for ever) and no ASYNC_CANCEL by user_data found it (-ENOENT,
 * seen on 6.18), so a closed connection was never released. With it the
 * kernel answers a full socket with a short result or EAGAIN: a short
 * result is resubmitted for the rest, and an EAGAIN waits for POLLOUT first
 * (send_wait_room), a POLL_ADD under the op's user_data that a cancel finds.
 * Cancellation: ASYNC_CANCEL by user_data, i.e. exactly that operation,
 * with its result checked: a send between two of its partial writes is
 * queued in the kernel for its next try, where the cancel does not find it
 * (-ENOENT); it is asked again (op_cancel, on_cancel_cqe).
 * Posts from other threads: a mutex-protected list plus an eventfd with a
 * pending IORING_OP_READ on the ring (the poster may be a thread without a
 * ring, so IORING_OP_MSG_RING alone would not do); a post from the worker
 * itself goes to the local ready list.
 *
 * Registered files (Linux 6.13 and later, see files_wanted): each ring has a
 * sparse table of file slots (RLIMIT_NOFILE at open shared among the rings,
 * at most UR_FIXED_MAX each). A socket that has lived to its
 * UR_FIXED_SEND-th send is put in a free slot by an
 * IORING_OP_FILES_UPDATE queued before that send, and every later SQE names
 * the slot (IOSQE_FIXED_FILE): the kernel then skips the fd-table lookup and
 * the file reference count per operation. Not at attach: filling and
 * emptying a slot costs more than a short connection's few operations save
 * (docs/uring.md). SQEs run in ring order, so the update is in force before
 * the first SQE that uses it. The slot holds a reference to the file:
 * ur_detach queues the update that empties it, and the socket really closes
 * (FIN or reset) when that reaches the kernel, at the latest with the
 * worker's next io_uring_enter. A socket that finds no free slot (or no SQE)
 * goes on with its fd, as every socket does when the table was refused or
 * PORTCULLIS_URING_FIXED_FILES=0.
 *
 * user_data carries a pointer with a 3-bit tag: an op_t (UD_OP), a socket's
 * receive state urx_t (UD_RX), the queue's wake-up read (UD_WAKE), or a
 * cancel request whose result is ignored (UD_IGNORE), or a registered-file
 * update (UD_SLOT, which completes only when it fails). While an op is in the
 * kernel, op->next points at its port_sock_t. */
#include "port.h"
#include "post_list.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/env.h"
#include "core/errno_map.h"
#include "core/log.h"
#include "core/thread.h"

#define UR_SQ_ENTRIES   256
#define UR_CQ_ENTRIES   4096
#define UR_BUF_COUNT    256u        /* provided buffers per queue (power of two) */
#define UR_BUF_SIZE     (32u << 10) /* bytes per provided buffer */
#define UR_BGID         0           /* buffer group id (one per ring) */
#define UR_DEFER_MAX    8           /* see ur_wait */
#define UR_STREAM_POLLS 64          /* readiness rounds of a streaming socket */
/* urx_t allocated together: 170 of 24 bytes and the link fill 4 KiB, one
 * of the allocator's size classes (128 of 40 took a 6 KiB block: 48 bytes
 * per connection instead of 24, in every idle connection) */
#define UR_RX_CHUNK   170
#define UR_SEND_FLAGS (MSG_NOSIGNAL | MSG_WAITALL | MSG_DONTWAIT)
#define UR_FIXED_MAX  65535u /* registered file slots per ring (urx_t.slot is 16 bits) */
#define UR_FIXED_SEND 7      /* a socket takes a slot with this send (urx_t.sends) */
_Static_assert(UR_FIXED_SEND <= 7, "urx_t.sends counts to UR_FIXED_SEND in 3 bits");

enum { UD_OP = 0, UD_RX = 1, UD_WAKE = 2, UD_IGNORE = 3, UD_SLOT = 4, UD_CANCEL = 5, UD_MASK = 7 };

/* op->busy of an op in the kernel (port.h leaves values above 1 to the
 * backend): a cancellation of it is in the kernel (its CQE, UD_CANCEL, is
 * still to come); its own result came first and is staged in op->res_*
 * until then; and how often the cancellation has been asked again. */
enum {
    OPB_CANCEL = 1u << 1,
    OPB_DONE = 1u << 2,
    OPB_TRY_SHIFT = 3,
    OPB_TRY_MAX = 31, /* asked again at most this often (5 bits) */
};

/* port_sock_t.backend_flags */
enum {
    UR_ATTACHED = 1u << 0,
    UR_RD_KERNEL = 1u << 1, /* s->rd is a POLL_ADD in the kernel (poll mode) */
};

enum { RECV_POLL = 0, RECV_MULTISHOT = 1 };

/* Receive state of one socket. Owned by the queue, not by the connection:
 * a multishot recv may still be in the kernel after the socket is detached
 * and its connection reused, so its CQEs must not point at the connection.
 * Orphaned (s == NULL) until the multishot's final CQE, then recycled. */
typedef struct urx_s {
    union {
        port_sock_t *s;          /* attached; NULL: orphaned */
        struct urx_s *next_free; /* free (never orphaned: freed only once
                                  * disarmed and detached) */
    };
    uint32_t prep_gen;  /* q->gen when an SQE naming the fd (not a slot) was last prepared */
    int16_t head, tail; /* received buffers (bids, < 32768) not yet handed over */
    uint16_t count;
    int16_t term_status;  /* 0: readable/EOF (the shared code reads); < 0: a PC_E* error */
    uint8_t armed : 1;    /* a multishot recv is in the kernel */
    uint8_t stopping : 1; /* its cancellation is queued */
    uint8_t term : 1;     /* a final result waits behind the buffers */
    uint8_t stream : 1;   /* streaming: receive by readiness, see rx_wait_data */
    uint8_t sends : 3;    /* sends prepared, counted up to UR_FIXED_SEND */
    uint8_t stream_polls; /* <= UR_STREAM_POLLS */
    uint16_t slot;        /* registered file slot + 1; 0: the socket's fd is used */
} urx_t;                  /* 24 bytes: one per socket, so in every idle connection */
_Static_assert(sizeof(urx_t) <= 24, "urx_t is in every idle connection (docs/engine.md)");

typedef struct urx_chunk_s {
    struct urx_chunk_s *next;
    urx_t rx[UR_RX_CHUNK];
} urx_chunk_t;

/* Per SQE slot, valid until the SQE is submitted (IORING_FEAT_SUBMIT_STABLE:
 * the kernel has copied what it needs by then). */
typedef union ur_side_u {
    struct msghdr mh;
    struct sockaddr_storage ss;
    int fd; /* IORING_OP_FILES_UPDATE reads it at submission */
} ur_side_t;

typedef struct urq_s {
    struct io_uring ring;
    int ring_ok;
    int enabled;
    int ring_fd_registered; /* in the worker's own table (ur_enable, ur_leave) */
    unsigned setup_flags;
    uint32_t gen; /* bumped whenever the SQ ring has been emptied by a submit */
    ur_side_t *side;
    post_list_t posts; /* cross-thread posts and their eventfd */
    uint64_t evbuf;
    int wake_armed;
    op_fifo_t ready; /* owner thread only */
    int recv_mode;
    int deferred; /* port_waits that returned ready work without entering */
    /* provided buffers: [ring | buffers] in one mapping */
    unsigned nbufs, buf_size;
    unsigned rx_high; /* buffers a socket whose reader paused may hold */
    void *map;
    size_t map_len;
    struct io_uring_buf_ring *br;
    char *bufs;
    int32_t *bnext; /* per-bid link of the per-socket FIFOs */
    uint32_t *blen;
    urx_t *rx_free;
    urx_chunk_t *rx_chunks;
    /* registered file slots: 0..slots_used-1 have been handed out; the
     * free ones among them are stacked in slot_free */
    unsigned nslots, slots_used, nslot_free;
    uint16_t *slot_free;
} urq_t;

typedef struct port_uring_s {
    port_t base;
    urq_t *qs;
} port_uring_t;

static PC_THREAD_LOCAL urq_t *tls_q;

static int ur_err(int res)
{
    return pc__from_errno(-res);
}

/* ---- queue helpers ------------------------------------------------------------ */

static urq_t *sock_q(port_t *p, port_sock_t *s)
{
    return &((port_uring_t *)p)->qs[s->q];
}

static void op_set_result(op_t *op, int status, size_t bytes, void *data)
{
    op->res_status = status;
    op->res_bytes = (uint32_t)bytes;
    op->res_data = data;
}

static void ready_push(urq_t *q, op_t *op, int status, size_t bytes, void *data)
{
    op_set_result(op, status, bytes, data);
    op_fifo_push(&q->ready, op);
}

static void ur_submit(urq_t *q)
{
    int rc;
    do {
        rc = io_uring_submit(&q->ring);
    } while (rc == -EINTR);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY)
        PC_LOGE("io_uring: submit failed: %s", pc_strerror(ur_err(rc)));
    if (io_uring_sq_ready(&q->ring) == 0) q->gen++;
}

/* An SQE; when the SQ ring is full, what is queued is submitted first.
 * NULL only when the kernel refuses submissions. */
static struct io_uring_sqe *ur_sqe(urq_t *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        ur_submit(q);
        sqe = io_uring_get_sqe(&q->ring);
    }
    return sqe;
}

static ur_side_t *ur_side(urq_t *q, const struct io_uring_sqe *sqe)
{
    return &q->side[sqe - q->ring.sq.sqes];
}

static void ur_set_data(struct io_uring_sqe *sqe, void *ptr, unsigned tag)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ptr | tag);
}

/* Point a prepared SQE at the socket: its registered slot, else its fd
 * (which ur_detach then knows to submit before the fd is closed). */
static void ur_target(urq_t *q, struct io_uring_sqe *sqe, urx_t *rx)
{
    if (rx->slot) {
        sqe->fd = rx->slot - 1;
        sqe->flags |= IOSQE_FIXED_FILE;
    } else {
        rx->prep_gen = q->gen;
    }
}

/* Queue the update that puts fd (-1: nothing) in registered slot i. */
static int slot_update(urq_t *q, unsigned i, int fd)
{
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    int *arg = &ur_side(q, sqe)->fd;
    *arg = fd;
    io_uring_prep_files_update(sqe, arg, 1, (int)i);
    io_uring_sqe_set_data64(sqe, UD_SLOT);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* Put the socket in a free registered slot, if there is one (and an SQE). */
static void slot_take(urq_t *q, urx_t *rx, int fd)
{
    unsigned i;
    if (q->nslot_free)
        i = q->slot_free[q->nslot_free - 1];
    else if (q->slots_used < q->nslots)
        i = q->slots_used;
    else
        return;
    if (slot_update(q, i, fd) < 0) return;
    rx->prep_gen = q->gen; /* the update names the fd */
    if (q->nslot_free)
        q->nslot_free--;
    else
        q->slots_used++;
    rx->slot = (uint16_t)(i + 1);
}

/* Cancel whatever carries user_data (ptr | tag); the result is ignored
 * (a receive's multishot: one it misses has ended, and its final CQE
 * recycles the urx_t). Operations: op_cancel. */
static int ur_cancel_ud(urq_t *q, void *ptr, unsigned tag)
{
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)ptr | tag, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* The final result of op: to the ready list, or, while a cancellation of
 * it is in the kernel, staged until that cancellation's CQE (on_cancel_cqe):
 * then no CQE names the op once its completion is returned. */
static void op_done(urq_t *q, op_t *op, int status, size_t bytes)
{
    if (op->busy & OPB_CANCEL) {
        op_set_result(op, status, bytes, NULL);
        op->busy |= OPB_DONE;
        return;
    }
    ready_push(q, op, status, bytes, NULL);
}

/* Cancel op (in the kernel, as op | UD_OP: a send's POLLOUT wait and its
 * rest use that user_data too), its result checked by on_cancel_cqe.
 * Without an SQE, a synchronous cancel, whose miss is only logged. */
static int op_cancel(urq_t *q, op_t *op)
{
    if (op->busy & OPB_CANCEL) return 0; /* already asked */
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (sqe) {
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op | UD_OP, 0);
        ur_set_data(sqe, op, UD_CANCEL);
        op->busy |= OPB_CANCEL;
        return 0;
    }
    struct io_uring_sync_cancel_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.addr = (uint64_t)(uintptr_t)op | UD_OP;
    reg.timeout.tv_sec = reg.timeout.tv_nsec = -1;
    int rc = io_uring_register_sync_cancel(&q->ring, &reg);
    if (rc < 0 && rc != -EALREADY) {
        PC_LOGE("io_uring: cancelling an operation failed (no SQE; synchronous cancel: %s)",
                pc_strerror(ur_err(rc)));
        return ur_err(rc);
    }
    return 0;
}

/* The result of op_cancel's ASYNC_CANCEL. -ENOENT while the op is still in
 * the kernel: it was between two tries (a send's partial writes, queued to
 * run again when this worker next enters the kernel), so it is asked again;
 * each ask goes with the next io_uring_enter, which runs those tries first.
 * Found (0), or running in io-wq and interrupted (-EALREADY): its own CQE
 * follows. */
static void on_cancel_cqe(urq_t *q, op_t *op, int res)
{
    if (op->busy & OPB_DONE) { /* the op's own result came first */
        op->busy = 1;
        op_fifo_push(&q->ready, op);
        return;
    }
    unsigned tries = (unsigned)op->busy >> OPB_TRY_SHIFT;
    op->busy = 1;
    if (res != -ENOENT) return;
    if (tries >= OPB_TRY_MAX) {
        PC_LOGW("io_uring: an operation was not found by %u cancellations; it completes on its "
                "own",
                tries + 1);
        return;
    }
    op->busy = (uint8_t)(1 | ((tries + 1) << OPB_TRY_SHIFT));
    if (op_cancel(q, op) < 0) op->busy = 1;
}

/* ---- provided buffers and per-socket receive state ---------------------------- */

static char *buf_addr(urq_t *q, unsigned bid)
{
    return q->bufs + (size_t)bid * q->buf_size;
}

static void buf_recycle(urq_t *q, unsigned bid)
{
    io_uring_buf_ring_add(q->br, buf_addr(q, bid), q->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(q->nbufs), 0);
    io_uring_buf_ring_advance(q->br, 1);
}

static urx_t *rx_alloc(urq_t *q)
{
    if (!q->rx_free) {
        urx_chunk_t *ch = pc__malloc(sizeof *ch);
        if (!ch) return NULL;
        ch->next = q->rx_chunks;
        q->rx_chunks = ch;
        for (int i = UR_RX_CHUNK; i-- > 0;) {
            ch->rx[i].next_free = q->rx_free;
            q->rx_free = &ch->rx[i];
        }
    }
    urx_t *rx = q->rx_free;
    q->rx_free = rx->next_free;
    memset(rx, 0, sizeof *rx);
    rx->head = rx->tail = -1;
    rx->prep_gen = q->gen - 1;
    return rx;
}

static void rx_drop_buffers(urq_t *q, urx_t *rx)
{
    while (rx->head >= 0) {
        int32_t bid = rx->head;
        rx->head = (int16_t)q->bnext[bid];
        buf_recycle(q, (unsigned)bid);
    }
    rx->tail = -1;
    rx->count = 0;
}

static void rx_free(urq_t *q, urx_t *rx)
{
    rx_drop_buffers(q, rx);
    rx->next_free = q->rx_free;
    q->rx_free = rx;
}

static int rx_arm(urq_t *q, urx_t *rx, port_sock_t *s)
{
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
    ur_target(q, sqe, rx);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BGID;
    ur_set_data(sqe, rx, UD_RX);
    rx->armed = 1;
    rx->stopping = 0;
    return 0;
}

/* s->rd waits and nothing is queued: start what will complete it. A socket
 * that streams (a receive filled a whole buffer) is read by readiness for a
 * while: POLL_ADD, then the shared code reads into its worker's buffer, which
 * stays in cache, where the provided buffers, recycled first-in first-out
 * through the whole pool, are cold for every bulk byte. Request/response
 * traffic never fills a buffer and stays on multishot. */
static int rx_wait_data(urq_t *q, urx_t *rx, port_sock_t *s)
{
    if (q->recv_mode == RECV_MULTISHOT && !rx->stream) return rx_arm(q, rx, s);
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    io_uring_prep_poll_add(sqe, s->fd, POLLIN);
    ur_target(q, sqe, rx);
    ur_set_data(sqe, s->rd, UD_OP);
    s->backend_flags |= UR_RD_KERNEL;
    if (rx->stream && ++rx->stream_polls >= UR_STREAM_POLLS) rx->stream = 0;
    return 0;
}

/* s->rd waits: hand it the oldest buffer, else the final result, else make
 * sure a receive is under way. */
static void rx_deliver(urq_t *q, urx_t *rx, port_sock_t *s)
{
    op_t *op = s->rd;
    if (rx->count) {
        int32_t bid = rx->head;
        rx->head = (int16_t)q->bnext[bid];
        if (rx->head < 0) rx->tail = -1;
        rx->count--;
        s->rd = NULL;
        ready_push(q, op, 0, q->blen[bid], buf_addr(q, (unsigned)bid));
    } else if (rx->term) {
        rx->term = 0;
        s->rd = NULL;
        ready_push(q, op, rx->term_status, 0, NULL);
    } else if (!rx->armed) {
        int rc = rx_wait_data(q, rx, s);
        if (rc < 0) {
            s->rd = NULL;
            ready_push(q, op, rc, 0, NULL);
        }
    }
}

static void on_rx_cqe(urq_t *q, urx_t *rx, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE)) rx->armed = rx->stopping = 0;
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (!rx->s) {
            buf_recycle(q, bid);
        } else {
            q->bnext[bid] = -1;
            q->blen[bid] = (uint32_t)res;
            if (rx->tail >= 0)
                q->bnext[rx->tail] = (int32_t)bid;
            else
                rx->head = (int16_t)bid;
            rx->tail = (int16_t)bid;
            rx->count++;
            if ((unsigned)res == q->buf_size && !rx->stream) { /* streaming */
                rx->stream = 1;
                rx->stream_polls = 0;
                if (rx->armed && !rx->stopping && ur_cancel_ud(q, rx, UD_RX) == 0) rx->stopping = 1;
            }
        }
    } else if (res == -ECANCELED) {
        /* ours: the reader paused, the socket streams, or it was detached */
    } else if (res == -EINVAL && rx->s && q->recv_mode == RECV_MULTISHOT && !rx->count) {
        /* a kernel without multishot recv: poll from now on */
        PC_LOGW("io_uring: multishot recv refused (EINVAL); queue falls back to poll mode");
        q->recv_mode = RECV_POLL;
        rx->term = 1;
        rx->term_status = 0;
    } else if (res <= 0 && !(flags & IORING_CQE_F_MORE)) {
        /* 0: EOF; ENOBUFS: out of buffers, data still in the socket. Either
         * way the shared code reads the socket itself and sees which. */
        rx->term = 1;
        rx->term_status = (int16_t)((res == 0 || res == -ENOBUFS) ? 0 : ur_err(res));
    }
    if (!rx->s) {
        if (!rx->armed) rx_free(q, rx);
        return;
    }
    port_sock_t *s = rx->s;
    if (s->rd)
        rx_deliver(q, rx, s);
    else if (rx->count >= q->rx_high && rx->armed && !rx->stopping &&
             ur_cancel_ud(q, rx, UD_RX) == 0)
        rx->stopping = 1;
}

/* ---- operations ------------------------------------------------------------------ */

static int ur_attach(port_t *p, port_sock_t *s)
{
    urq_t *q = sock_q(p, s);
    s->rd = s->wr = NULL;
    s->backend_flags = 0;
    urx_t *rx = rx_alloc(q);
    if (!rx) return PC_ENOMEM;
    rx->s = s;
    s->backend_priv = rx;
    s->backend_flags = UR_ATTACHED;
    return 0;
}

static int ur_recv(port_t *p, port_sock_t *s, op_t *op)
{
    urq_t *q = sock_q(p, s);
    urx_t *rx = s->backend_priv;
    if (!rx) return PC_ENOTCONN;
    op->kind = OP_RECV;
    op->busy = 1;
    op->next = (op_t *)(void *)s;
    s->rd = op;
    if (rx->count || rx->term || rx->armed) {
        rx_deliver(q, rx, s);
        return 0;
    }
    int rc = rx_wait_data(q, rx, s);
    if (rc < 0) {
        s->rd = NULL;
        op->busy = 0;
    }
    return rc;
}

static void ur_recv_done(port_t *p, port_sock_t *s, void *data)
{
    urq_t *q = sock_q(p, s);
    size_t off = (size_t)((char *)data - q->bufs);
    buf_recycle(q, (unsigned)(off / q->buf_size));
}

static int prep_send(urq_t *q, port_sock_t *s, op_t *op)
{
    urx_t *rx = s->backend_priv;
    if (rx->sends < UR_FIXED_SEND && ++rx->sends == UR_FIXED_SEND && q->nslots)
        slot_take(q, rx, s->fd); /* a connection that lasts: see the top */
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    int flags = UR_SEND_FLAGS | (op->fin_next ? MSG_MORE : 0);
    if (op->nbufs == 1) {
        io_uring_prep_send(sqe, s->fd, op->bufs[0].base, op->bufs[0].len, flags);
    } else {
        struct msghdr *mh = &ur_side(q, sqe)->mh;
        memset(mh, 0, sizeof *mh);
        mh->msg_iov = (struct iovec *)(void *)op->bufs; /* pc_buf_t has the iovec layout */
        mh->msg_iovlen = op->nbufs;
        io_uring_prep_sendmsg(sqe, s->fd, mh, (unsigned)flags);
    }
    ur_target(q, sqe, rx);
    ur_set_data(sqe, op, UD_OP);
    op->next = (op_t *)(void *)s;
    return 0;
}

static int ur_send(port_t *p, port_sock_t *s, op_t *op, pc_buf_t *bufs, unsigned n)
{
    urq_t *q = sock_q(p, s);
    if (!s->backend_priv) return PC_ENOTCONN;
    op->kind = OP_SEND;
    op->busy = 1;
    op->bufs = bufs;
    op->nbufs = n;
    op->res_bytes = 0;
    while (op->nbufs > 0 && op->bufs[0].len == 0) {
        op->bufs++;
        op->nbufs--;
    }
    if (op->nbufs == 0) {
        ready_push(q, op, 0, 0, NULL);
        return 0;
    }
    int rc = prep_send(q, s, op);
    if (rc < 0) {
        op->busy = 0;
        return rc;
    }
    s->wr = op;
    return 0;
}

static int ur_connect(port_t *p, port_sock_t *s, op_t *op, const struct sockaddr *sa, socklen_t len)
{
    urq_t *q = sock_q(p, s);
    if (!s->backend_priv) return PC_ENOTCONN;
    if (len > (socklen_t)sizeof(struct sockaddr_storage)) return PC_EINVAL;
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    struct sockaddr_storage *ss = &ur_side(q, sqe)->ss;
    memcpy(ss, sa, len);
    op->kind = OP_CONNECT;
    op->busy = 1;
    op->res_bytes = 0;
    op->next = (op_t *)(void *)s;
    io_uring_prep_connect(sqe, s->fd, (struct sockaddr *)ss, len);
    urx_t *rx = s->backend_priv;
    ur_target(q, sqe, rx);
    ur_set_data(sqe, op, UD_OP);
    s->wr = op;
    return 0;
}

/* The kernel answered a send with EAGAIN instead of waiting for room
 * (seen on a resubmitted rest of a short MSG_WAITALL sendmsg): wait for
 * POLLOUT under the op's own user_data, so a cancellation of the send
 * cancels the wait, then send the rest (on_op_cqe, OP_SEND_WAIT). */
static int send_wait_room(urq_t *q, port_sock_t *s, op_t *op)
{
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return PC_ENOMEM;
    io_uring_prep_poll_add(sqe, s->fd, POLLOUT);
    ur_target(q, sqe, s->backend_priv);
    ur_set_data(sqe, op, UD_OP);
    op->kind = OP_SEND_WAIT;
    return 0;
}

static void on_send_cqe(urq_t *q, port_sock_t *s, op_t *op, int res)
{
    if (res == -EAGAIN && (s->backend_flags & UR_ATTACHED)) {
        int rc = send_wait_room(q, s, op);
        if (rc == 0) return;
        res = -EAGAIN;
    }
    if (res < 0) {
        s->wr = NULL;
        op_done(q, op, ur_err(res), op->res_bytes);
        return;
    }
    port_send_advance(op, (size_t)res);
    if (op->nbufs == 0) {
        s->wr = NULL;
        op_done(q, op, 0, op->res_bytes);
    } else if (res == 0 || !(s->backend_flags & UR_ATTACHED)) {
        s->wr = NULL;
        op_done(q, op, res == 0 ? PC_EIO : PC_ECANCELED, op->res_bytes);
    } else {
        int rc = prep_send(q, s, op); /* short write: send the rest */
        if (rc < 0) {
            s->wr = NULL;
            op_done(q, op, rc, op->res_bytes);
        }
    }
}

static void on_op_cqe(urq_t *q, op_t *op, int res)
{
    port_sock_t *s = (port_sock_t *)(void *)op->next;
    switch (op->kind) {
    case OP_RECV: /* poll mode: readable (res = poll mask) or an error */
        if (s->rd == op) {
            s->rd = NULL;
            s->backend_flags &= (uint16_t)~UR_RD_KERNEL;
        }
        op_done(q, op, res < 0 ? ur_err(res) : 0, 0);
        break;
    case OP_SEND:
        on_send_cqe(q, s, op, res);
        break;
    case OP_SEND_WAIT: /* room to send (poll mask), or cancelled / failed */
        op->kind = OP_SEND;
        if (res >= 0 && (s->backend_flags & UR_ATTACHED)) {
            int rc = prep_send(q, s, op);
            if (rc == 0) break;
            res = rc == PC_ENOMEM ? -ENOMEM : -EIO;
        }
        s->wr = NULL;
        op_done(q, op, res < 0 ? ur_err(res) : PC_ECANCELED, op->res_bytes);
        break;
    case OP_CONNECT:
        if (s->wr == op) s->wr = NULL;
        op_done(q, op, res < 0 ? ur_err(res) : 0, 0);
        break;
    default:
        PC_LOGE("io_uring: completion for an op of kind %d", op->kind);
        break;
    }
}

static int ur_cancel(port_t *p, port_sock_t *s, op_t *op)
{
    urq_t *q = sock_q(p, s);
    if (op == s->rd && !(s->backend_flags & UR_RD_KERNEL)) { /* waiting for buffers: ours */
        s->rd = NULL;
        ready_push(q, op, PC_ECANCELED, 0, NULL);
        return 0;
    }
    if (op == s->rd || op == s->wr) return op_cancel(q, op);
    return 0;
}

static void ur_detach(port_t *p, port_sock_t *s)
{
    urq_t *q = sock_q(p, s);
    urx_t *rx = s->backend_priv;
    s->backend_flags &= (uint16_t)~UR_ATTACHED;
    if (s->rd) {
        if (s->backend_flags & UR_RD_KERNEL) {
            op_cancel(q, s->rd); /* completes through its own CQE */
        } else {
            ready_push(q, s->rd, PC_ECANCELED, 0, NULL);
            s->rd = NULL;
        }
    }
    if (s->wr) op_cancel(q, s->wr);
    if (!rx) return;
    s->backend_priv = NULL;
    rx_drop_buffers(q, rx);
    rx->term = 0;
    rx->s = NULL;
    if (rx->armed && !rx->stopping && ur_cancel_ud(q, rx, UD_RX) == 0) rx->stopping = 1;
    if (rx->slot) {
        /* SQEs naming the slot run before this update empties it, and the
         * slot's reference keeps the socket open until then: the caller's
         * close only drops the fd. Without an SQE (the kernel refuses
         * submissions) the slot is emptied by a system call of its own;
         * SQEs of the socket still queued then fail with EBADF, as they
         * would once the fd is closed. */
        unsigned i = rx->slot - 1u;
        int none = -1;
        rx->slot = 0;
        if (slot_update(q, i, -1) == 0 ||
            io_uring_register_files_update(&q->ring, i, &none, 1) == 1)
            q->slot_free[q->nslot_free++] = (uint16_t)i;
        else
            PC_LOGE("io_uring: emptying registered file slot %u failed; slot retired", i);
    }
    /* The caller closes the fd when we return: an SQE naming it (not a
     * slot) must reach the kernel first, or it would name a closed (or
     * reused) descriptor. Submitted requests hold the file itself and only
     * need cancelling. */
    if (rx->prep_gen == q->gen && io_uring_sq_ready(&q->ring)) ur_submit(q);
    if (!rx->armed) rx_free(q, rx);
}

/* ---- posts and the wake-up read ------------------------------------------------ */

static void arm_wake(urq_t *q)
{
    struct io_uring_sqe *sqe = ur_sqe(q);
    if (!sqe) return; /* retried by the next port_wait */
    io_uring_prep_read(sqe, q->posts.evfd, &q->evbuf, sizeof q->evbuf, 0);
    ur_set_data(sqe, q, UD_WAKE);
    q->wake_armed = 1;
}

static void take_posted(urq_t *q)
{
    op_t *h = post_list_take(&q->posts);
    while (h) {
        op_t *n = h->next;
        ready_push(q, h, 0, 0, NULL);
        h = n;
    }
}

static void on_wake(urq_t *q, int res)
{
    q->wake_armed = 0;
    post_list_woken(&q->posts); /* before taking: see post_list.h */
    take_posted(q);
    if (res > 0 || res == -EINTR || res == -EAGAIN)
        arm_wake(q);
    else if (res != -ECANCELED)
        PC_LOGE("io_uring: wake-up read failed: %s", pc_strerror(ur_err(res)));
}

static int ur_post(port_t *p, int qi, op_t *op)
{
    urq_t *q = &((port_uring_t *)p)->qs[qi];
    op->kind = OP_POST;
    op->busy = 1;
    if (tls_q == q) { /* the worker posting to itself: no lock, no system call */
        ready_push(q, op, 0, 0, NULL);
        return 0;
    }
    post_list_push(&q->posts, op);
    return 0;
}

/* ---- waiting ---------------------------------------------------------------------- */

/* First port_wait of a queue, on its worker: enable the ring so that this
 * thread is its single issuer, and arm the wake-up read. */
static int ur_enable(urq_t *q)
{
    if (q->setup_flags & IORING_SETUP_R_DISABLED) {
        int rc = io_uring_register(q->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (rc < 0) {
            PC_LOGE("io_uring: enabling the ring failed: %s", pc_strerror(ur_err(rc)));
            return ur_err(rc);
        }
    }
    /* saves a file-table lookup per io_uring_enter; optional. It lives in
     * this thread's table of registered rings: ur_leave drops it here. */
    q->ring_fd_registered = io_uring_register_ring_fd(&q->ring) == 1;
    q->enabled = 1;
    arm_wake(q);
    return 0;
}

/* Is an io_uring_enter needed to make progress without waiting? */
static int ur_need_enter(urq_t *q)
{
    if (io_uring_sq_ready(&q->ring)) return 1;
    unsigned f = IO_URING_READ_ONCE(*q->ring.sq.kflags);
    if (f & IORING_SQ_CQ_OVERFLOW) return 1;
    if (q->setup_flags & IORING_SETUP_TASKRUN_FLAG) return (f & IORING_SQ_TASKRUN) != 0;
    return (q->setup_flags & IORING_SETUP_DEFER_TASKRUN) != 0;
}

static void harvest(urq_t *q)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&q->ring, head, cqe)
    {
        uint64_t ud = cqe->user_data;
        void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
        switch (ud & UD_MASK) {
        case UD_OP:
            on_op_cqe(q, ptr, cqe->res);
            break;
        case UD_RX:
            on_rx_cqe(q, ptr, cqe->res, cqe->flags);
            break;
        case UD_WAKE:
            on_wake(q, cqe->res);
            break;
        case UD_CANCEL:
            on_cancel_cqe(q, ptr, cqe->res);
            break;
        case UD_SLOT: /* only failures complete: never seen. A failed filling
                       * fails the socket's later ops (EBADF); a failed emptying
                       * keeps its file until the slot is filled again. */
            PC_LOGE("io_uring: a registered file update failed: %s", pc_strerror(ur_err(cqe->res)));
            break;
        default:
            break;
        }
        n++;
    }
    io_uring_cq_advance(&q->ring, n);
}

static int ur_wait(port_t *p, int qi, completion_t *out, int max, int timeout_ms, int *drained)
{
    urq_t *q = &((port_uring_t *)p)->qs[qi];
    if (!q->enabled) {
        int rc = ur_enable(q);
        if (rc < 0) return rc;
    }
    tls_q = q;
    if (!q->wake_armed) arm_wake(q);
    int rc = 0;
    /* With work already on the ready list, entering the kernel only to push
     * out what the last callbacks queued costs a system call per loop
     * iteration, and a connection draining its received buffers one per
     * iteration would pay it per buffer (and send per buffer). So the ready
     * list is served up to UR_DEFER_MAX times before SQEs are flushed; sends
     * queued meanwhile coalesce in the connection's send queue. */
    if (q->ready.head || timeout_ms == 0) {
        if (ur_need_enter(q) && (!q->ready.head || ++q->deferred >= UR_DEFER_MAX)) {
            q->deferred = 0;
            rc = io_uring_submit_and_get_events(&q->ring);
        }
    } else {
        q->deferred = 0;
        struct __kernel_timespec ts, *tsp = NULL;
        struct io_uring_cqe *cqe;
        if (timeout_ms > 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
            tsp = &ts;
        }
        rc = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, tsp, NULL);
    }
    if (io_uring_sq_ready(&q->ring) == 0) q->gen++;
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return ur_err(rc);
    /* the CQ holds every completion unless the kernel still has work to run
     * for this ring (deferred task work, an overflow) or SQEs wait: then a
     * deferred wait (above) left data in the kernel */
    int whole = !ur_need_enter(q);
    harvest(q);
    int k = op_fifo_drain(&q->ready, out, max);
    /* and no receive re-armed by the harvest still waits to be submitted */
    *drained = whole && !io_uring_sq_ready(&q->ring);
    return k;
}

static int ur_staged(port_t *p, int qi)
{
    return ((port_uring_t *)p)->qs[qi].ready.head != NULL;
}

/* ---- setup and teardown -------------------------------------------------------------- */

/* The worker leaves: unregister its ring fd from its own table. Left
 * registered, io_uring_queue_exit (ur_close, on the thread that destroys the
 * server) would unregister the same offset in *that* thread's table, which
 * the kernel does not check against this ring: an application ring, or
 * another server's worker's (a worker may destroy another server), lost its
 * registration (EBADF) unless SINGLE_ISSUER made the kernel refuse. */
static void ur_leave(port_t *p, int qi)
{
    urq_t *q = &((port_uring_t *)p)->qs[qi];
    if (q->ring_fd_registered && io_uring_unregister_ring_fd(&q->ring) == 1)
        q->ring_fd_registered = 0;
}

static void ur_close(port_t *p)
{
    port_uring_t *ur = (port_uring_t *)p;
    for (int i = 0; i < p->nqueues; i++) {
        urq_t *q = &ur->qs[i];
        /* Closing the ring cancels what is still in the kernel; only then
         * may the memory those requests name go away. */
        if (q->ring_ok) io_uring_queue_exit(&q->ring);
        if (q->posts.evfd >= 0) close(q->posts.evfd);
        if (q->map) munmap(q->map, q->map_len);
        pc__free(q->bnext);
        pc__free(q->blen);
        pc__free(q->side);
        pc__free(q->slot_free);
        while (q->rx_chunks) {
            urx_chunk_t *n = q->rx_chunks->next;
            pc__free(q->rx_chunks);
            q->rx_chunks = n;
        }
        post_list_destroy(&q->posts);
    }
    pc__free(ur->qs);
    pc__free(ur);
}

static const port_vtbl_t ur_vtbl = {
    .name = "io_uring",
    .id = PC_BACKEND_URING,
    .close = ur_close,
    .attach = ur_attach,
    .recv = ur_recv,
    .recv_done = ur_recv_done,
    .send = ur_send,
    .connect = ur_connect,
    .cancel = ur_cancel,
    .detach = ur_detach,
    .post = ur_post,
    .wait = ur_wait,
    .staged = ur_staged,
    .leave = ur_leave,
};

/* Ring set-ups from best to most compatible. DEFER_TASKRUN runs completion
 * work only when the worker asks for completions, so it never interrupts the
 * worker's other system calls; both it and SINGLE_ISSUER need the worker to
 * be the only thread that submits, hence R_DISABLED until its first wait. */
static const unsigned ur_setups[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
        IORING_SETUP_R_DISABLED,
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
        IORING_SETUP_R_DISABLED,
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    0,
};

static int ring_init(urq_t *q, unsigned first)
{
    int rc = -EINVAL;
    for (unsigned i = first; i < sizeof ur_setups / sizeof ur_setups[0]; i++) {
        struct io_uring_params prm;
        memset(&prm, 0, sizeof prm);
        prm.flags = ur_setups[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        prm.cq_entries = UR_CQ_ENTRIES;
        rc = io_uring_queue_init_params(UR_SQ_ENTRIES, &q->ring, &prm);
        if (rc == -EINVAL) { /* older kernel: try without the optional flags */
            prm.flags = ur_setups[i];
            rc = io_uring_queue_init_params(UR_SQ_ENTRIES, &q->ring, &prm);
        }
        if (rc == 0) {
            q->setup_flags = prm.flags;
            q->ring_ok = 1;
            return 0;
        }
        if (rc != -EINVAL) break; /* EPERM, ENOMEM, ...: flags do not help */
    }
    /* The kernel's ENOMEM here is its locked-memory limit for rings (before
     * 5.12), not our heap: report io_uring as unavailable so AUTO uses epoll. */
    return rc == -ENOMEM ? PC_ENOBUFS : ur_err(rc);
}

/* The queue's provided-buffer ring. PC_ENOMEM is fatal; anything else
 * leaves this queue receiving with poll. */
static int bufs_init(urq_t *q)
{
    q->bnext = pc__malloc(q->nbufs * sizeof *q->bnext);
    q->blen = pc__malloc(q->nbufs * sizeof *q->blen);
    if (!q->bnext || !q->blen) return PC_ENOMEM;
    size_t ring_len = q->nbufs * sizeof(struct io_uring_buf);
    ring_len = (ring_len + 4095) & ~(size_t)4095;
    size_t len = ring_len + (size_t)q->nbufs * q->buf_size;
    /* mmap, not the allocator: the ring must be page-aligned, and after the
     * ring is torn down the kernel must never write into memory that was
     * handed back to a heap. Pages are committed as buffers are first used. */
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return PC_ENOBUFS;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)m;
    reg.ring_entries = q->nbufs;
    reg.bgid = UR_BGID;
    int rc = io_uring_register_buf_ring(&q->ring, &reg, 0);
    if (rc < 0) {
        munmap(m, len);
        return rc == -ENOMEM ? PC_ENOBUFS : ur_err(rc);
    }
    q->map = m;
    q->map_len = len;
    q->br = m;
    q->bufs = (char *)m + ring_len;
    io_uring_buf_ring_init(q->br);
    for (unsigned i = 0; i < q->nbufs; i++)
        io_uring_buf_ring_add(q->br, buf_addr(q, i), q->buf_size, (unsigned short)i,
                              io_uring_buf_ring_mask(q->nbufs), (int)i);
    io_uring_buf_ring_advance(q->br, (int)q->nbufs);
    return 0;
}

/* Rings are created (and probed) on a short-lived thread of our own. The
 * kernel links a ring to each thread that created or submitted to it, and
 * when the ring is torn down its exit work queues task_work with TWA_SIGNAL
 * to those threads: a blocking system call with a timeout that one of them
 * is in at that moment fails with EINTR. The application's threads must not
 * see that; our workers, the only submitters, have exited by then. */
static int run_on_helper(pc_thread_fn fn, void *arg)
{
    pc_thread_t t;
    int rc = pc__thread_start(&t, fn, arg, "pc-uring-setup");
    if (rc < 0) return rc;
    pc__thread_join(t);
    return 0;
}

typedef struct open_job_s {
    port_uring_t *ur;
    unsigned first;
    int want_multishot;
    unsigned want_slots;
    int rc;
    int nbuf_fail;
    int slot_fail;
} open_job_t;

/* Registered file slots per ring, 0 for none. Before Linux 6.13 the kernel
 * released the files of emptied slots in the order of its resource nodes:
 * one request that names any slot and stays in the kernel (a POLL_ADD or a
 * re-armed multishot recv of an idle connection) held back every later
 * close of a socket that had a slot, so a closed connection sent no FIN
 * until then. So on those kernels the table stays off. Otherwise the
 * process's RLIMIT_NOFILE is shared among the rings, at most UR_FIXED_MAX
 * each (the kernel spends about 8 bytes per slot); a socket past its
 * ring's table keeps its fd. PORTCULLIS_URING_FIXED_FILES sets the size,
 * up to RLIMIT_NOFILE and UR_FIXED_MAX (a larger value: a warning, the
 * default). */
static unsigned files_wanted(int nqueues)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2) major = 0;
    if (major < 6 || (major == 6 && minor < 13)) {
        PC_LOGI("io_uring: registered files off: Linux %s holds an emptied slot's file "
                "until older requests finish (6.13 and later do not)",
                major ? u.release : "(unknown)");
        return 0;
    }
    struct rlimit rl;
    unsigned cap = UR_FIXED_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < UR_FIXED_MAX)
        cap = (unsigned)rl.rlim_cur;
    unsigned share = cap / (unsigned)nqueues;
    return pc__env_uint("PORTCULLIS_URING_FIXED_FILES", share ? share : 1, 0, cap);
}

/* The queue's table of registered file slots, all empty. The raw register
 * call, not liburing's helper, which raises RLIMIT_NOFILE on EMFILE: a
 * library must not change the process's limits. PC_ENOMEM is fatal;
 * anything else leaves the queue's sockets on their fds. */
static int slots_init(urq_t *q, unsigned n)
{
    q->slot_free = pc__malloc(n * sizeof *q->slot_free);
    if (!q->slot_free) return PC_ENOMEM;
    struct io_uring_rsrc_register reg;
    memset(&reg, 0, sizeof reg);
    reg.flags = IORING_RSRC_REGISTER_SPARSE;
    reg.nr = n;
    int rc = io_uring_register(q->ring.ring_fd, IORING_REGISTER_FILES2, &reg, sizeof reg);
    if (rc < 0) {
        pc__free(q->slot_free);
        q->slot_free = NULL;
        return rc == -ENOMEM ? PC_ENOBUFS : ur_err(rc);
    }
    q->nslots = n;
    return 0;
}

static void open_rings(void *arg)
{
    open_job_t *job = arg;
    port_uring_t *ur = job->ur;
    for (int i = 0; i < ur->base.nqueues; i++) {
        urq_t *q = &ur->qs[i];
        /* blocking eventfd: io_uring polls it instead of failing with EAGAIN */
        q->posts.evfd = eventfd(0, EFD_CLOEXEC);
        if (q->posts.evfd < 0) {
            job->rc = sock_last_error();
            return;
        }
        job->rc = ring_init(q, job->first);
        if (job->rc < 0) return;
        q->side = pc__calloc(q->ring.sq.ring_entries, sizeof *q->side);
        if (!q->side) {
            job->rc = PC_ENOMEM;
            return;
        }
        q->recv_mode = RECV_POLL;
        if (job->want_multishot) {
            int rc = bufs_init(q);
            if (rc == 0)
                q->recv_mode = RECV_MULTISHOT;
            else if (rc == PC_ENOMEM)
                job->rc = rc;
            else
                job->nbuf_fail = rc;
            if (job->rc < 0) return;
        }
        if (job->want_slots && !job->slot_fail) {
            int rc = slots_init(q, job->want_slots);
            if (rc == PC_ENOMEM) {
                job->rc = rc;
                return;
            }
            if (rc < 0) job->slot_fail = rc;
        }
    }
}

int port_uring_open(port_t **out, int nqueues)
{
    int rc = port_uring_probe();
    if (rc < 0) return rc;
    port_uring_t *ur = pc__calloc(1, sizeof *ur);
    if (!ur) return PC_ENOMEM;
    ur->qs = pc__calloc((size_t)nqueues, sizeof *ur->qs);
    if (!ur->qs) {
        pc__free(ur);
        return PC_ENOMEM;
    }
    ur->base.vt = &ur_vtbl;
    ur->base.nqueues = nqueues;
    ur->base.single_owner = 1;

    open_job_t job;
    memset(&job, 0, sizeof job);
    job.ur = ur;
    static const char *const recv_modes[] = {"multishot", "poll"};
    job.want_multishot = pc__env_choice("PORTCULLIS_URING_RECV", recv_modes, 2) != 1;
    static const char *const taskruns[] = {"coop", "plain"};
    int tr = pc__env_choice("PORTCULLIS_URING_TASKRUN", taskruns, 2);
    if (tr == 0) job.first = 1;
    if (tr == 1) job.first = 3;
    /* buffer geometry: tuning and tests (a tiny pool exercises ENOBUFS) */
    unsigned nbufs = pc__env_uint("PORTCULLIS_URING_BUFFERS", UR_BUF_COUNT, 1, 32768);
    unsigned buf_size = pc__env_uint("PORTCULLIS_URING_BUFFER_SIZE", UR_BUF_SIZE, 512, 1u << 20);
    while (nbufs & (nbufs - 1))
        nbufs &= nbufs - 1; /* a power of two */
    job.want_slots = files_wanted(nqueues);

    for (int i = 0; i < nqueues; i++) {
        urq_t *q = &ur->qs[i];
        q->posts.evfd = -1;
        q->nbufs = nbufs;
        q->buf_size = buf_size;
        q->rx_high = nbufs / 16 > 4 ? nbufs / 16 : 4;
        post_list_init(&q->posts);
    }
    rc = run_on_helper(open_rings, &job);
    if (rc == 0) rc = job.rc;
    if (rc < 0) {
        PC_LOGW("io_uring: opening the rings failed: %s", pc_strerror(rc));
        ur_close(&ur->base);
        return rc;
    }
    if (job.nbuf_fail)
        PC_LOGI("io_uring: provided-buffer rings refused (%s); receiving with poll",
                pc_strerror(job.nbuf_fail));
    if (job.slot_fail) {
        PC_LOGI("io_uring: registered file tables refused (%s); operations name fds",
                pc_strerror(job.slot_fail));
        for (int i = 0; i < nqueues; i++) { /* all queues alike */
            urq_t *q = &ur->qs[i];
            if (q->nslots) io_uring_unregister_files(&q->ring);
            pc__free(q->slot_free);
            q->slot_free = NULL;
            q->nslots = 0;
        }
    }
    ur->base.recv_data = job.want_multishot && !job.nbuf_fail;
    PC_LOGD("io_uring: %d rings, setup flags 0x%x, receive mode %s, %u registered file slots "
            "per ring",
            nqueues, ur->qs[0].setup_flags, ur->base.recv_data ? "multishot" : "poll",
            ur->qs[0].nslots);
    *out = &ur->base;
    return 0;
}

/* ---- the probe ------------------------------------------------------------------- */

static void probe_kernel(void *arg)
{
    int *out = arg;
    struct io_uring ring;
    struct io_uring_params prm;
    memset(&prm, 0, sizeof prm);
    int rc = io_uring_queue_init_params(4, &ring, &prm);
    if (rc < 0) {
        /* ENOSYS: no io_uring; EPERM: kernel.io_uring_disabled or seccomp
         * (which may also say ENOSYS); EACCES is counted as EPERM */
        int e = (rc == -EACCES) ? PC_EPERM : ur_err(rc);
        if (e != PC_EPERM && e != PC_ENOMEM) e = PC_ENOSYS;
        PC_LOGI("io_uring probe: io_uring_setup failed: %s", pc_strerror(ur_err(rc)));
        *out = e;
        return;
    }
    static const struct {
        unsigned feat;
        const char *name;
    } feats[] = {
        {IORING_FEAT_NODROP, "IORING_FEAT_NODROP"},
        {IORING_FEAT_SUBMIT_STABLE, "IORING_FEAT_SUBMIT_STABLE"},
        {IORING_FEAT_FAST_POLL, "IORING_FEAT_FAST_POLL"},
        {IORING_FEAT_CQE_SKIP, "IORING_FEAT_CQE_SKIP"},
    };
    static const struct {
        int op;
        const char *name;
    } ops[] = {
        {IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_SEND, "SEND"},
        {IORING_OP_SENDMSG, "SENDMSG"},   {IORING_OP_RECV, "RECV"},
        {IORING_OP_CONNECT, "CONNECT"},   {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_READ, "READ"},
    };
    rc = 0;
    for (size_t i = 0; i < sizeof feats / sizeof feats[0] && !rc; i++) {
        if (!(prm.features & feats[i].feat)) {
            PC_LOGI("io_uring probe: the kernel lacks %s", feats[i].name);
            rc = PC_ENOSYS;
        }
    }
    struct io_uring_probe *pr = rc ? NULL : io_uring_get_probe_ring(&ring);
    if (!rc && !pr) {
        PC_LOGI("io_uring probe: IORING_REGISTER_PROBE failed");
        rc = PC_ENOSYS;
    }
    for (size_t i = 0; pr && i < sizeof ops / sizeof ops[0] && !rc; i++) {
        if (!io_uring_opcode_supported(pr, ops[i].op)) {
            PC_LOGI("io_uring probe: the kernel lacks IORING_OP_%s", ops[i].name);
            rc = PC_ENOSYS;
        }
    }
    if (pr) io_uring_free_probe(pr);
    io_uring_queue_exit(&ring);
    *out = rc;
}

int port_uring_probe(void)
{
    /* Test seam: behave as on a kernel without io_uring. */
    if (pc__env_flag("PORTCULLIS_URING_PROBE_FAIL")) {
        PC_LOGI("io_uring probe: failing on request (PORTCULLIS_URING_PROBE_FAIL)");
        return PC_ENOSYS;
    }
    /* What the kernel allows does not change while the process runs: probe
     * once (a failure for want of memory is not remembered). */
    static atomic_int cached = 1; /* 1: not probed yet */
    int rc = atomic_load(&cached);
    if (rc != 1) return rc;
    int res = PC_ENOSYS;
    rc = run_on_helper(probe_kernel, &res);
    if (rc < 0) return rc;
    if (res != PC_ENOMEM) atomic_store(&cached, res);
    return res;
}
