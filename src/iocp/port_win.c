/* SPDX-License-Identifier: MIT */
/* IOCP backend: one I/O completion port shared by every worker.
 *
 * - Workers dequeue with GetQueuedCompletionStatusEx in batches. Where it is
 *   missing or fails a self-test at open, one GetQueuedCompletionStatus per
 *   packet is used instead (same results, more system calls).
 * - OP_RECV is a zero-byte overlapped WSARecv: it completes when the socket is
 *   readable (or at EOF / on error) and pins no buffer while the connection is
 *   idle; the shared code then drains it with non-blocking recv().
 * - OP_SEND is one overlapped WSASend of the caller's pc_buf_t array (WSABUF
 *   layout). A send that completes short is re-issued for the rest from
 *   port_wait; the caller sees one completion with the total.
 * - OP_CONNECT is ConnectEx (the socket is bound to the wildcard first).
 * - FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set only when the providers that
 *   serve our TCP sockets (asked of a real socket per family, so a layered
 *   provider over TCP shows) are IFS providers (a non-IFS layered one may
 *   complete synchronously and still queue a packet, or the reverse). With it,
 *   an operation that succeeds synchronously queues no packet: the result is
 *   staged on the calling worker's ready list and returned by its next
 *   port_wait, never inside the start call (port.h contract).
 * - Completion keys: KEY_POST for port_post, KEY_STAGED for a staged result
 *   that had to travel through the port (start call from a thread that is
 *   not a worker of this port), KEY_PROBE for the dequeue self-test's
 *   packet (dropped if a worker ever sees it), otherwise the socket's
 *   port_sock_t.
 *
 * Ownership: an op belongs to the kernel from a successful start until its
 * packet is dequeued; the shared code keeps it alive until port_wait returns
 * it. Cancellation is CancelIoEx on exactly that op's OVERLAPPED; detach
 * cancels everything pending on the socket, and the caller's closesocket
 * aborts whatever raced past. Either way each op completes once
 * (STATUS_CANCELLED -> PC_ECANCELED).
 *
 * Re-issuing the rest of a short send, and finishing a ConnectEx, happen on
 * whichever worker dequeued the packet, outside the connection's strand; a
 * small striped lock orders them against detach/cancel so that a socket handle
 * is never used after the strand has decided to close it. */
#include "port.h"

#include <mswsock.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/env.h"
#include "core/log.h"
#include "core/thread.h"
#include "error_win.h"

enum {
    PW_ATTACHED = 1u << 0, /* associated with the completion port */
    PW_SKIP = 1u << 1,     /* FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is on for this socket */
    PW_DETACHED = 1u << 2, /* detached: no more re-issues (under the stripe lock) */
};

/* op->busy values while the kernel owns the op */
enum { BUSY_NO = 0, BUSY_YES = 1, BUSY_CANCEL = 2 };

#define KEY_POST   ((ULONG_PTR)1)
#define KEY_STAGED ((ULONG_PTR)2)
#define KEY_PROBE  ((ULONG_PTR)3) /* probe_gqcsex's packet: never an op */
#define PW_BATCH   128
#define PW_LOCKS   64

typedef BOOL(WINAPI *gqcsex_fn)(HANDLE, LPOVERLAPPED_ENTRY, ULONG, PULONG, DWORD, BOOL);

struct port_win_s;

typedef struct pwq_s {
    struct port_win_s *pw;
    op_fifo_t ready; /* staged results; owner thread only */
    OVERLAPPED_ENTRY entries[PW_BATCH];
} pwq_t;

typedef struct port_win_s {
    port_t base;
    HANDLE iocp;
    gqcsex_fn gqcsex; /* NULL: GetQueuedCompletionStatus one by one */
    int skip_ok;      /* every provider is IFS: skip-on-success is safe */
    SRWLOCK locks[PW_LOCKS];
    pwq_t *qs;
} port_win_t;

static PC_THREAD_LOCAL pwq_t *tls_q; /* the queue whose worker this thread is */

static port_win_t *pwin(port_t *p)
{
    return (port_win_t *)p;
}

static SRWLOCK *stripe(port_win_t *pw, const port_sock_t *s)
{
    return &pw->locks[((uintptr_t)s / sizeof(void *)) % PW_LOCKS];
}

static int last_win_error(void)
{
    int e = pc__from_win32(GetLastError());
    return e ? e : PC_EUNKNOWN;
}

static int last_wsa_error(int e)
{
    int r = pc__from_win32((unsigned long)e);
    return r ? r : PC_EUNKNOWN;
}

/* Report op with (status, bytes) through port_wait without a packet from the
 * kernel: on the calling worker's ready list, or through the port when the
 * caller is not one of our workers. */
static int stage(port_win_t *pw, op_t *op, int status, size_t bytes)
{
    op->res_status = status;
    op->res_bytes = (uint32_t)bytes;
    op->res_data = NULL;
    pwq_t *q = tls_q;
    if (q && q->pw == pw) {
        op_fifo_push(&q->ready, op);
        return 0;
    }
    if (!PostQueuedCompletionStatus(pw->iocp, 0, KEY_STAGED, &op->ov)) return last_win_error();
    return 0;
}

/* ---- attach, detach, cancel ---------------------------------------------------------- */

static int pw_attach(port_t *p, port_sock_t *s)
{
    port_win_t *pw = pwin(p);
    s->rd = s->wr = NULL;
    s->backend_flags = 0;
    if (!CreateIoCompletionPort((HANDLE)s->fd, pw->iocp, (ULONG_PTR)s, 0)) return last_win_error();
    s->backend_flags = PW_ATTACHED;
    if (pw->skip_ok &&
        SetFileCompletionNotificationModes((HANDLE)s->fd, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                              FILE_SKIP_SET_EVENT_ON_HANDLE))
        s->backend_flags |= PW_SKIP;
    return 0;
}

static int pw_cancel(port_t *p, port_sock_t *s, op_t *op)
{
    port_win_t *pw = pwin(p);
    SRWLOCK *l = stripe(pw, s);
    AcquireSRWLockExclusive(l);
    if (op->busy == BUSY_YES) op->busy = BUSY_CANCEL; /* stops a short-send re-issue */
    ReleaseSRWLockExclusive(l);
    /* ERROR_NOT_FOUND: it already finished (packet queued or staged) or sits
     * between two parts of a short send; both end in one completion. */
    if (!CancelIoEx((HANDLE)s->fd, &op->ov) && GetLastError() != ERROR_NOT_FOUND)
        return last_win_error();
    return 0;
}

static void pw_detach(port_t *p, port_sock_t *s)
{
    port_win_t *pw = pwin(p);
    SRWLOCK *l = stripe(pw, s);
    AcquireSRWLockExclusive(l);
    uint32_t was = s->backend_flags;
    s->backend_flags |= PW_DETACHED;
    ReleaseSRWLockExclusive(l);
    if (was & PW_ATTACHED) CancelIoEx((HANDLE)s->fd, NULL);
}

/* ---- receive: zero-byte read -------------------------------------------------------- */

static int pw_recv(port_t *p, port_sock_t *s, op_t *op)
{
    port_win_t *pw = pwin(p);
    WSABUF none;
    none.len = 0;
    none.buf = NULL;
    DWORD flags = 0, got = 0;
    op->kind = OP_RECV;
    op->busy = BUSY_YES;
    op->res_status = 0;
    op->res_bytes = 0;
    memset(&op->ov, 0, sizeof op->ov);
    if (WSARecv(s->fd, &none, 1, &got, &flags, &op->ov, NULL) == 0) {
        /* readable now; without skip-on-success a packet follows anyway */
        return (s->backend_flags & PW_SKIP) ? stage(pw, op, 0, 0) : 0;
    }
    int e = WSAGetLastError();
    if (e == WSA_IO_PENDING) return 0;
    /* failed at once: no packet will come */
    return stage(pw, op, last_wsa_error(e), 0);
}

/* ---- send ------------------------------------------------------------------------------ */

/* Issue WSASend for what remains of op. Returns 0 if a packet will report
 * it, 1 if it finished here (result in op->res_status / res_bytes). */
static int send_issue(sock_t fd, uint32_t backend_flags, op_t *op)
{
    for (;;) {
        DWORD sent = 0;
        memset(&op->ov, 0, sizeof op->ov);
        /* pc_buf_t has the WSABUF layout (portcullis.h) */
        int r = WSASend(fd, (WSABUF *)(void *)op->bufs, op->nbufs, &sent, 0, &op->ov, NULL);
        if (r != 0) {
            int e = WSAGetLastError();
            if (e == WSA_IO_PENDING) return 0;
            op->res_status = last_wsa_error(e);
            return 1;
        }
        if (!(backend_flags & PW_SKIP)) return 0; /* the packet carries the count */
        if (sent == 0) {                          /* cannot happen with bytes left; never spin */
            op->res_status = PC_EIO;
            return 1;
        }
        port_send_advance(op, sent);
        if (op->nbufs == 0) {
            op->res_status = 0;
            return 1;
        }
    }
}

static int pw_send(port_t *p, port_sock_t *s, op_t *op, pc_buf_t *bufs, unsigned n)
{
    port_win_t *pw = pwin(p);
    op->kind = OP_SEND;
    op->busy = BUSY_YES;
    op->bufs = bufs;
    op->nbufs = n;
    op->res_bytes = 0;
    op->res_status = 0;
    while (op->nbufs > 0 && op->bufs[0].len == 0) { /* nothing to send in empty leaders */
        op->bufs++;
        op->nbufs--;
    }
    if (op->nbufs == 0) return stage(pw, op, 0, 0);
    if (send_issue(s->fd, s->backend_flags, op))
        return stage(pw, op, op->res_status, op->res_bytes);
    return 0;
}

/* A send packet arrived with status st and n bytes. Returns 1 when op is
 * finished (result in op->res_*), 0 when the rest was re-issued. */
static int send_completed(port_win_t *pw, port_sock_t *s, op_t *op, int st, size_t n)
{
    if (st < 0) {
        op->res_status = st;
        op->res_bytes += n;
        return 1;
    }
    port_send_advance(op, n);
    if (op->nbufs == 0) {
        op->res_status = 0;
        return 1;
    }
    if (n == 0) { /* a success that moved nothing: report rather than loop */
        op->res_status = PC_EIO;
        return 1;
    }
    /* Short send: continue with the rest, unless the strand detached the
     * socket or cancelled the op meanwhile (it closes the handle right after
     * detach, so the handle is only used under the lock). */
    SRWLOCK *l = stripe(pw, s);
    int done;
    AcquireSRWLockExclusive(l);
    if ((s->backend_flags & PW_DETACHED) || op->busy == BUSY_CANCEL) {
        op->res_status = PC_ECANCELED;
        done = 1;
    } else {
        done = send_issue(s->fd, s->backend_flags, op);
    }
    ReleaseSRWLockExclusive(l);
    return done;
}

/* ---- connect --------------------------------------------------------------------------- */

static LPFN_CONNECTEX load_connectex(sock_t fd)
{
    GUID guid = WSAID_CONNECTEX;
    LPFN_CONNECTEX fn = NULL;
    DWORD got = 0;
    if (WSAIoctl(fd, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &fn, sizeof fn, &got,
                 NULL, NULL) != 0)
        return NULL;
    return fn;
}

/* After ConnectEx the socket needs SO_UPDATE_CONNECT_CONTEXT before
 * getpeername, shutdown and friends work on it. */
static void connect_finish(sock_t fd)
{
    setsockopt(fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
}

static int pw_connect(port_t *p, port_sock_t *s, op_t *op, const struct sockaddr *sa, socklen_t len)
{
    port_win_t *pw = pwin(p);
    op->kind = OP_CONNECT;
    op->busy = BUSY_YES;
    op->res_status = 0;
    op->res_bytes = 0;
    memset(&op->ov, 0, sizeof op->ov);
    LPFN_CONNECTEX connectex = load_connectex(s->fd);
    if (!connectex) return sock_last_error();
    /* ConnectEx requires a bound socket */
    struct sockaddr_storage local;
    int llen = (int)sizeof local;
    if (getsockname(s->fd, (struct sockaddr *)&local, &llen) != 0) {
        memset(&local, 0, sizeof local);
        local.ss_family = sa->sa_family;
        llen = sa->sa_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
                                         : (int)sizeof(struct sockaddr_in);
        if (bind(s->fd, (struct sockaddr *)&local, llen) != 0) return sock_last_error();
    }
    if (connectex(s->fd, sa, len, NULL, 0, NULL, &op->ov)) {
        if (!(s->backend_flags & PW_SKIP)) return 0;
        connect_finish(s->fd);
        return stage(pw, op, 0, 0);
    }
    int e = WSAGetLastError();
    if (e == WSA_IO_PENDING) return 0;
    return stage(pw, op, last_wsa_error(e), 0);
}

/* ---- post, wait --------------------------------------------------------------------------- */

static int pw_post(port_t *p, int q, op_t *op)
{
    (void)q; /* one port: any worker may take it */
    op->kind = OP_POST;
    op->busy = BUSY_YES;
    if (!PostQueuedCompletionStatus(pwin(p)->iocp, 0, KEY_POST, &op->ov)) return last_win_error();
    return 0;
}

/* Turn one dequeued packet into at most one completion. Returns 1 if out was
 * filled. */
static int take_packet(port_win_t *pw, const OVERLAPPED_ENTRY *e, completion_t *out)
{
    /* a self-test packet left in the port (probe_gqcsex could not take it
     * back): its OVERLAPPED was on the prober's stack, never read it */
    if (!e->lpOverlapped || e->lpCompletionKey == KEY_PROBE) return 0;
    op_t *op = (op_t *)(void *)e->lpOverlapped; /* the OVERLAPPED is op's first member */
    int status = 0;
    size_t bytes = 0;
    if (e->lpCompletionKey == KEY_POST) {
        /* status 0, bytes 0 */
    } else if (e->lpCompletionKey == KEY_STAGED) {
        status = op->res_status;
        bytes = op->res_bytes;
    } else {
        port_sock_t *s = (port_sock_t *)e->lpCompletionKey;
        int st = pc__from_ntstatus((long)op->ov.Internal);
        switch (op->kind) {
        case OP_SEND:
            if (!send_completed(pw, s, op, st, e->dwNumberOfBytesTransferred)) return 0;
            status = op->res_status;
            bytes = op->res_bytes;
            break;
        case OP_CONNECT:
            if (st == 0) {
                SRWLOCK *l = stripe(pw, s);
                AcquireSRWLockExclusive(l);
                if (!(s->backend_flags & PW_DETACHED)) connect_finish(s->fd);
                ReleaseSRWLockExclusive(l);
            }
            status = st;
            break;
        default: /* OP_RECV: zero-byte read, no bytes to report */
            status = st;
            break;
        }
    }
    op->busy = BUSY_NO;
    out->op = op;
    out->status = status;
    out->bytes = bytes;
    out->data = NULL;
    return 1;
}

static int pw_wait(port_t *p, int qi, completion_t *out, int max, int timeout_ms, int *drained)
{
    port_win_t *pw = pwin(p);
    pwq_t *q = &pw->qs[qi];
    tls_q = q;
    int k = op_fifo_drain(&q->ready, out, max); /* busy = 0 is BUSY_NO */
    if (k == max) return k;
    /* with staged results in hand, only poll the port */
    DWORD tmo = k ? 0 : (timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    ULONG want = (ULONG)(max - k) < PW_BATCH ? (ULONG)(max - k) : PW_BATCH;
    ULONG got = 0;
    int failed = 0;
    if (pw->gqcsex) {
        if (!pw->gqcsex(pw->iocp, q->entries, want, &got, tmo, FALSE)) {
            DWORD e = GetLastError();
            got = 0;
            if (e != WAIT_TIMEOUT && !k) return pc__from_win32(e) ? pc__from_win32(e) : PC_EIO;
            failed = e != WAIT_TIMEOUT;
        }
    } else {
        while (got < want) {
            DWORD bytes = 0;
            ULONG_PTR key = 0;
            OVERLAPPED *ov = NULL;
            GetQueuedCompletionStatus(pw->iocp, &bytes, &key, &ov, got ? 0 : tmo);
            if (!ov) { /* timeout or failure of the wait itself */
                DWORD e = GetLastError();
                failed = e != WAIT_TIMEOUT;
                if (e == WAIT_TIMEOUT || got || k) break;
                return pc__from_win32(e) ? pc__from_win32(e) : PC_EIO;
            }
            /* FALSE with ov set is a failed operation: its status is in ov */
            q->entries[got].lpCompletionKey = key;
            q->entries[got].lpOverlapped = ov;
            q->entries[got].dwNumberOfBytesTransferred = bytes;
            q->entries[got].Internal = 0;
            got++;
        }
    }
    for (ULONG i = 0; i < got; i++)
        if (take_packet(pw, &q->entries[i], &out[k])) k++;
    /* fewer packets than asked for: the port was empty then (unless the
     * wait itself failed) */
    *drained = !failed && got < want;
    return k;
}

static int pw_staged(port_t *p, int qi)
{
    return pwin(p)->qs[qi].ready.head != NULL;
}

/* The pending zero-byte receive has completed (the system sets Internal to
 * STATUS_PENDING when it issues the request and to the result when it
 * completes), and its result has not reached the strand: it is queued in
 * the port, in a batch another worker has not dispatched yet, or staged. */
static int pw_input_held(port_t *p, port_sock_t *s, op_t *rd)
{
    (void)p;
    (void)s;
    return rd && rd->ov.Internal != (ULONG_PTR)0x103L; /* STATUS_PENDING */
}

/* ---- open, close ----------------------------------------------------------------------- */

static void pw_close(port_t *p)
{
    port_win_t *pw = pwin(p);
    if (pw->iocp) CloseHandle(pw->iocp);
    pc__free(pw->qs);
    pc__free(pw);
}

/* GetQueuedCompletionStatusEx, if the system has it and it returns a posted
 * packet faithfully. NULL otherwise (why: in *why). */
static gqcsex_fn probe_gqcsex(HANDLE iocp, const char **why)
{
    if (pc__env_switch("PORTCULLIS_IOCP_GQCSEX") == 0) {
        *why = "disabled by PORTCULLIS_IOCP_GQCSEX";
        return NULL;
    }
    HMODULE k32 = GetModuleHandleW(L"kernel32.dll");
    gqcsex_fn fn =
        k32 ? (gqcsex_fn)(uintptr_t)GetProcAddress(k32, "GetQueuedCompletionStatusEx") : NULL;
    if (!fn) {
        *why = "GetQueuedCompletionStatusEx not found";
        return NULL;
    }
    OVERLAPPED probe;
    memset(&probe, 0, sizeof probe);
    if (!PostQueuedCompletionStatus(iocp, 7, KEY_PROBE, &probe)) {
        *why = "PostQueuedCompletionStatus failed";
        return NULL;
    }
    OVERLAPPED_ENTRY e[2];
    ULONG got = 0;
    memset(e, 0, sizeof e);
    BOOL ok = fn(iocp, e, 2, &got, 1000, FALSE);
    if (ok && got == 1 && e[0].lpOverlapped == &probe && e[0].lpCompletionKey == KEY_PROBE &&
        e[0].dwNumberOfBytesTransferred == 7)
        return fn;
    if (!ok || got == 0) { /* take the probe back out before giving up on Ex */
        DWORD b;
        ULONG_PTR key;
        OVERLAPPED *ov;
        GetQueuedCompletionStatus(iocp, &b, &key, &ov, 1000);
    }
    *why = "GetQueuedCompletionStatusEx failed its self-test";
    return NULL;
}

/* Is the provider serving TCP sockets of this family an IFS provider (its
 * sockets are real kernel handles, so completion behaviour is the kernel's)?
 * Asked of a real socket, so a layered provider on top shows. 1 yes, 0 no,
 * -1 the family is not available. */
static int family_is_ifs(int family)
{
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) return -1;
    WSAPROTOCOL_INFOW info;
    int len = (int)sizeof info;
    int ok = getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == 0 &&
             (info.dwServiceFlags1 & XP1_IFS_HANDLES);
    closesocket(s);
    return ok;
}

/* Skip-on-success is only safe with IFS providers: a non-IFS (layered)
 * provider may report a synchronous success and still queue a packet, or the
 * reverse. Returns 1 if safe; *why says why or why not. */
static int probe_skip(const char **why)
{
    int force = pc__env_switch("PORTCULLIS_IOCP_SKIP");
    if (force == 0) {
        *why = "disabled by PORTCULLIS_IOCP_SKIP";
        return 0;
    }
    if (force == 1) {
        *why = "forced by PORTCULLIS_IOCP_SKIP";
        return 1;
    }
    int v4 = family_is_ifs(AF_INET), v6 = family_is_ifs(AF_INET6);
    if (v4 == 0 || v6 == 0) {
        *why = "a non-IFS (layered) provider serves TCP sockets";
        return 0;
    }
    if (v4 < 0 && v6 < 0) {
        *why = "cannot create a TCP socket to ask";
        return 0;
    }
    *why = "the TCP providers are IFS";
    return 1;
}

int port_win_open(port_t **out, int nqueues)
{
    if (nqueues < 1) return PC_EINVAL;
    port_win_t *pw = pc__calloc(1, sizeof *pw);
    if (!pw) return PC_ENOMEM;
    pw->qs = pc__calloc((size_t)nqueues, sizeof *pw->qs);
    if (!pw->qs) {
        pc__free(pw);
        return PC_ENOMEM;
    }
    static const port_vtbl_t vtbl = {
        .name = "iocp",
        .id = PC_BACKEND_IOCP,
        .close = pw_close,
        .attach = pw_attach,
        .recv = pw_recv,
        .recv_done = NULL,
        .send = pw_send,
        .connect = pw_connect,
        .cancel = pw_cancel,
        .detach = pw_detach,
        .post = pw_post,
        .wait = pw_wait,
        .input_held = pw_input_held,
        .staged = pw_staged,
    };
    pw->base.vt = &vtbl;
    pw->base.nqueues = nqueues;
    pw->base.single_owner = 0;
    for (int i = 0; i < PW_LOCKS; i++)
        InitializeSRWLock(&pw->locks[i]);
    for (int i = 0; i < nqueues; i++)
        pw->qs[i].pw = pw;
    /* concurrency = number of workers: the kernel lets that many run */
    pw->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, (DWORD)nqueues);
    if (!pw->iocp) {
        int e = last_win_error();
        pw_close(&pw->base);
        return e;
    }
    const char *why_ex = "", *why_skip = "";
    pw->gqcsex = probe_gqcsex(pw->iocp, &why_ex);
    pw->skip_ok = probe_skip(&why_skip);
    if (pw->gqcsex)
        PC_LOGI("iocp: one completion port, %d workers; dequeue: GetQueuedCompletionStatusEx "
                "batches; skip-on-success: %s (%s)",
                nqueues, pw->skip_ok ? "on" : "off", why_skip);
    else
        PC_LOGI("iocp: one completion port, %d workers; dequeue: GetQueuedCompletionStatus (%s); "
                "skip-on-success: %s (%s)",
                nqueues, why_ex, pw->skip_ok ? "on" : "off", why_skip);
    *out = &pw->base;
    return 0;
}
