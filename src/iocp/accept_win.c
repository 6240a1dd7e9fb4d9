/* SPDX-License-Identifier: MIT */
/* The Windows accept loop: one thread per listener blocked in WSAAccept, whose
 * condition function runs the verdict pipeline (accept.c).
 *
 * Pre-handshake mode (SO_CONDITIONAL_ACCEPT was accepted by the stack): the
 * condition runs while the client's SYN waits, before the stack completes the
 * handshake. CF_ACCEPT completes it; CF_REJECT refuses it (WSAAccept fails
 * with WSAECONNREFUSED, the client never sees an established connection);
 * CF_DEFER leaves the request queued (WSAAccept fails with WSATRY_AGAIN) and
 * we retry it once capacity frees or after a short pause. A deferred request
 * sits at the head of the queue and holds back the ones behind it, so a defer
 * lasts at most config.defer_timeout_ms; then that request is refused.
 *
 * Post-handshake mode (the option was refused -- Wine answers WSAENOPROTOOPT --
 * or turned off): the stack has completed the handshake before WSAAccept
 * returns. The same condition function still runs (Wine and Windows both call
 * it for an established connection), but it only records the verdict and
 * returns CF_ACCEPT: we then reset a rejected connection ourselves (SO_LINGER
 * 0), never relying on what the stack does with CF_REJECT there (Wine closes
 * gracefully). A defer then behaves as on Linux: stop taking connections off
 * the backlog until capacity frees, bounded by defer_timeout_ms.
 *
 * Waiting and stopping: the listener is non-blocking, with FD_ACCEPT selected
 * on an event (WSAEventSelect); the thread calls WSAAccept until
 * WSAEWOULDBLOCK, then waits on that event, which the stop also sets. The
 * wait is bounded (ACCEPT_WAIT_MS), as Wine may miss an FD_ACCEPT. The
 * stop does not close the listener to unblock WSAAccept: between the
 * thread's stop check and its call, a closed handle's value may already
 * belong to a new socket (Wine hands it out again at once), and WSAAccept
 * would block on, or take a connection from, someone else's listener. The
 * listener is closed only after the thread has been joined. */
#include "server.h"

#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "error_win.h"

/* State shared by the loop and the condition function (one per thread; the
 * condition runs on the accept thread, inside WSAAccept). */
typedef struct cond_ctx_s {
    listener_t *l;
    int called;   /* the condition ran during this WSAAccept */
    int reserved; /* ...and returned PC_ACCEPT: a capacity slot is held */
    pc_verdict_t verdict;
    int step;
    /* pre-handshake defers: the request at the head of the queue */
    uint64_t defer_since; /* ms; 0 = no request deferred */
    struct sockaddr_storage defer_peer;
    int defer_counted;            /* the condition deferred it: its earlier steps are counted */
    struct sockaddr_storage none; /* AF_UNSPEC stand-in for a missing caller id */
} cond_ctx_t;

/* ---- listener ------------------------------------------------------------------ */

int accept_listener_open(pc_server_t *s, listener_t *l)
{
    int want = s->cfg.conditional_accept != PC_COND_ACCEPT_OFF;
    int rc = sock_listen((struct sockaddr *)&l->addr, l->addrlen, s->cfg.backlog, want,
                         &l->cond_err, &l->fd);
    if (rc < 0) return rc;
    /* FD_ACCEPT on an event (this also makes the listener non-blocking):
     * what the accept thread waits on, and what the stop sets */
    WSAEVENT ev = WSACreateEvent();
    if (ev == WSA_INVALID_EVENT || WSAEventSelect(l->fd, ev, FD_ACCEPT) != 0) {
        rc = sock_last_error();
        if (ev != WSA_INVALID_EVENT) WSACloseEvent(ev);
        sock_close(l->fd);
        l->fd = SOCK_INVALID;
        return rc;
    }
    l->accept_ev = ev;
    kfilter_attach(s, l, l->fd, NULL); /* none on Windows: says so when one was asked for */
    l->mode =
        (want && l->cond_err == 0) ? PC_ACCEPT_MODE_PRE_HANDSHAKE : PC_ACCEPT_MODE_POST_HANDSHAKE;
    /* the server reports pre-handshake only if every listener runs it */
    if (l->idx == 0 || l->mode == PC_ACCEPT_MODE_POST_HANDSHAKE) s->accept_mode = l->mode;

    char name[64];
    listener_name(l->fd, (struct sockaddr *)&l->addr, name, sizeof name);
    if (l->mode == PC_ACCEPT_MODE_PRE_HANDSHAKE)
        PC_LOGI("listener %s: conditional accept: pre-handshake (SO_CONDITIONAL_ACCEPT; "
                "connections are accepted, refused or deferred before the TCP handshake)",
                name);
    else if (want)
        PC_LOGW("listener %s: conditional accept: post-handshake fallback (reason: "
                "setsockopt(SO_CONDITIONAL_ACCEPT) failed: %s, %s); the same verdicts run "
                "after the handshake and rejected connections are reset",
                name, pc_err_name(l->cond_err), pc_strerror(l->cond_err));
    else
        PC_LOGI("listener %s: conditional accept: post-handshake (reason: turned off in the "
                "configuration); rejected connections are reset after the handshake",
                name);
    return 0;
}

void accept_listener_wake(listener_t *l)
{
    /* l->stopping is set: the thread sees it after this wake, or before it
     * waits again */
    if (l->accept_ev) WSASetEvent(l->accept_ev);
}

void accept_listener_close(listener_t *l)
{
    if (l->fd != SOCK_INVALID) sock_close(l->fd);
    if (l->accept_ev) WSACloseEvent(l->accept_ev);
    l->accept_ev = NULL;
}

/* ---- waiting ---------------------------------------------------------------------- */

/* Winsock does not say how many connections are queued: select() tells
 * whether one is. */
unsigned accept_backlog_queued(listener_t *l)
{
    sock_t fd = l->fd; /* closed only after this thread ends */
    if (fd == SOCK_INVALID || atomic_load(&l->stopping)) return 0;
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    struct timeval tv = {0, 0};
    return select(0, &rd, NULL, NULL, &tv) == 1 ? 1u : 0u;
}

/* ---- the condition function ------------------------------------------------------------ */

static const struct sockaddr *wsabuf_addr(const WSABUF *b)
{
    if (!b || !b->buf || b->len < sizeof(ADDRESS_FAMILY)) return NULL;
    const struct sockaddr *sa = (const struct sockaddr *)(const void *)b->buf;
    if (sa->sa_family == AF_INET && b->len >= sizeof(struct sockaddr_in)) return sa;
    if (sa->sa_family == AF_INET6 && b->len >= sizeof(struct sockaddr_in6)) return sa;
    return NULL; /* e.g. Wine passes a 16-byte callee id for IPv6 */
}

static size_t addr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Runs on the accept thread inside WSAAccept: no allocation, no blocking. */
static int CALLBACK accept_condition(LPWSABUF caller, LPWSABUF caller_data, LPQOS sqos, LPQOS gqos,
                                     LPWSABUF callee, LPWSABUF callee_data, GROUP *g, DWORD_PTR arg)
{
    (void)caller_data;
    (void)sqos;
    (void)gqos;
    (void)callee_data;
    (void)g;
    cond_ctx_t *cx = (cond_ctx_t *)arg;
    listener_t *l = cx->l;
    pc_server_t *s = l->srv;
    int pre = l->mode == PC_ACCEPT_MODE_PRE_HANDSHAKE;
    if (cx->reserved) { /* called twice in one WSAAccept: never hold two slots */
        accept_undo(l);
        cx->reserved = 0;
    }
    cx->called = 1;
    cx->step = -1;
    if (atomic_load(&l->stopping)) {
        cx->verdict = PC_REJECT;
        return pre ? CF_REJECT : CF_ACCEPT; /* post: the loop resets it */
    }
    const struct sockaddr *peer = wsabuf_addr(caller);
    if (!peer) peer = (const struct sockaddr *)&cx->none;
    const struct sockaddr *local = wsabuf_addr(callee);
    if (!local) local = (const struct sockaddr *)&l->addr;

    /* the request at the head of the queue, deferred before and asked again */
    int same = pre && cx->defer_since && peer->sa_family == cx->defer_peer.ss_family &&
               memcmp(peer, &cx->defer_peer, addr_len(peer)) == 0;
    int step = -1;
    pc_verdict_t v = accept_decide(l, peer, local, &step, same && cx->defer_counted);
    if (pre && v == PC_DEFER) {
        uint64_t now = pc__now_ms();
        /* sticky: a capacity defer between two asks stops before the rules */
        cx->defer_counted = (same && cx->defer_counted) || step == PC_STEP_CONDITION;
        if (!same) { /* a new head of the queue */
            cx->defer_since = now ? now : 1;
            /* as many bytes as `same` compares (the AF_UNSPEC stand-in is
             * a whole zeroed sockaddr_storage) */
            memcpy(&cx->defer_peer, peer, addr_len(peer));
            counter_add(&s->deferred, 1);
        } else if (now - cx->defer_since >= s->cfg.defer_timeout_ms) {
            /* deferred too long: it blocks every request behind it */
            v = PC_REJECT;
            counter_add(&s->rejected[step >= 0 && step < PC_STEP_COUNT ? step : PC_STEP_CAPACITY],
                        1);
        }
    }
    if (v != PC_DEFER) cx->defer_since = 0;
    cx->verdict = v;
    cx->step = step;
    cx->reserved = v == PC_ACCEPT;
    if (!pre) return CF_ACCEPT;
    return v == PC_ACCEPT ? CF_ACCEPT : v == PC_REJECT ? CF_REJECT : CF_DEFER;
}

/* ---- after WSAAccept -------------------------------------------------------------------- */

/* Post-handshake: apply the verdict to an established connection; deadline
 * as accept_hold_deferred's (0, or the pause it was queued through). Returns
 * 1 if fd may be handed to the workers (a slot is reserved), 0 if it was
 * closed. */
static int post_handshake_verdict(listener_t *l, cond_ctx_t *cx, sock_t fd,
                                  const struct sockaddr_storage *peer, uint64_t deadline)
{
    pc_verdict_t v = cx->verdict;
    int step = cx->step;
    if (!cx->called) /* a stack that did not call the condition */
        v = accept_decide(l, (const struct sockaddr *)peer, (struct sockaddr *)&l->addr, &step, 0);
    if (v == PC_DEFER) v = accept_hold_deferred(l, (const struct sockaddr *)peer, &step, deadline);
    if (v == PC_ACCEPT && atomic_load(&l->stopping)) {
        accept_undo(l);
        v = PC_REJECT;
    }
    if (v != PC_ACCEPT) {
        sock_close_reset(fd); /* the client sees a reset; never served */
        return 0;
    }
    return 1;
}

/* Give an accepted socket (slot and ticket held) to the workers; it counts
 * as accepted there. */
static void hand_off(pc_server_t *s, listener_t *l, sock_t fd, const struct sockaddr_storage *peer)
{
    /* The accepted socket carries the listener's WSAEventSelect (FD_ACCEPT
     * on its event): take it off, the completion port does the rest. */
    WSAEventSelect(fd, NULL, 0);
    /* WSAAccept's socket is inheritable whatever the listener's
     * WSA_FLAG_NO_HANDLE_INHERIT: a child process started with handle
     * inheritance would hold the connection open after we close it. A
     * non-IFS provider's handle may refuse; that is not fatal. */
    SetHandleInformation((HANDLE)fd, HANDLE_FLAG_INHERIT, 0);
    int rc = sock_set_nonblock(fd); /* the shared code drains with non-blocking recv */
    if (rc == 0) rc = conn_start_accepted(s, l, fd, peer);
    if (rc < 0) {
        accept_undo(l);
        counter_add(&s->accept_errors, 1);
        sock_close_reset(fd);
    }
}

void (*volatile accept_win_gap_hook)(sock_t lfd);

/* The longest wait for FD_ACCEPT before asking WSAAccept anyway. Microsoft
 * documents every WSAAccept but one failing with WSATRY_AGAIN as re-enabling
 * FD_ACCEPT; Wine re-enables it only at one that returns a connection, and
 * it may post FD_ACCEPT late, for a connection a WSAAccept already took: the
 * record stays set with the queue empty, and the next connection does not
 * signal the event (seen under load in idle_2000_connections). Taking a
 * connection resets Wine's record. */
#define ACCEPT_WAIT_MS 100

/* ---- the loop --------------------------------------------------------------------------- */

unsigned accept_batch_us(const pc_server_t *s)
{
    (void)s;
    return 0;
}

int accept_data_wait_available(void)
{
    return 0; /* WSAAccept returns a connection once its handshake completes */
}

void accept_thread_main(void *arg)
{
    listener_t *l = arg;
    pc_server_t *s = l->srv;
    int pre = l->mode == PC_ACCEPT_MODE_PRE_HANDSHAKE;
    cond_ctx_t cx;
    memset(&cx, 0, sizeof cx);
    cx.l = l;
    cx.none.ss_family = AF_UNSPEC;
    accept_backoff_t bo = {0, 0, 0};

    /* post-handshake: connections queued through a pause for capacity
     * (counted), not yet taken */
    accept_pause_t capwait = {0, 0};
    /* the last WSAAccept found nothing and the thread has waited for
     * FD_ACCEPT since: the connection that woke it is taken without a new
     * pause, as a blocking WSAAccept after the pause would have taken it
     * (the pause is for connections already queued) */
    int waited = 0;

    while (!atomic_load(&l->stopping)) {
        /* Post-handshake: at capacity, leave connections in the backlog (as
         * on Linux); a connection queued during the pause was deferred
         * through it, and is rejected at once if still over capacity after
         * a pause that timed out. Pre-handshake needs no such wait: the condition
         * defers the request and we wait below, only when a request exists. */
        if (!pre && s->cfg.at_capacity == PC_CAPACITY_DEFER && !waited)
            accept_wait_capacity(l, &capwait);
        waited = 0;
        /* the listener stays open until this thread has been joined */
        sock_t lfd = l->fd;
        if (atomic_load(&l->stopping)) break;

        void (*gap)(sock_t) = accept_win_gap_hook;
        if (gap) gap(lfd);
        struct sockaddr_storage peer;
        int plen = (int)sizeof peer;
        cx.called = 0;
        cx.reserved = 0;
        cx.verdict = PC_ACCEPT;
        cx.step = -1;
        SOCKET fd =
            WSAAccept(lfd, (struct sockaddr *)&peer, &plen, accept_condition, (DWORD_PTR)&cx);
        if (fd == INVALID_SOCKET) {
            int e = WSAGetLastError();
            capwait.held = 0;  /* post-handshake: the queued connection is gone */
            if (cx.reserved) { /* CF_ACCEPT, then the connection failed anyway */
                accept_undo(l);
                cx.reserved = 0;
            }
            if (atomic_load(&l->stopping)) break;
            if (e == WSAEWOULDBLOCK) { /* nothing queued: wait for FD_ACCEPT or the stop */
                /* bounded: Wine can miss an FD_ACCEPT (ACCEPT_WAIT_MS) */
                DWORD w = WaitForSingleObject(l->accept_ev, ACCEPT_WAIT_MS);
                if (w != WAIT_OBJECT_0 && w != WAIT_TIMEOUT) pc__sleep_ms(10); /* never spins */
                /* before the next WSAAccept: reset the event and the recorded
                 * FD_ACCEPT; a stop's set is seen by the check at the top */
                WSANETWORKEVENTS ne;
                if (WSAEnumNetworkEvents(lfd, l->accept_ev, &ne) != 0) WSAResetEvent(l->accept_ev);
                waited = 1;
                continue;
            }
            if (e == WSAECONNREFUSED) { /* our CF_REJECT: counted by the pipeline */
                bo.delay_ms = 0;
                continue;
            }
            if (e == WSATRY_AGAIN) { /* our CF_DEFER: the request stays queued */
                uint64_t deadline = cx.defer_since + s->cfg.defer_timeout_ms;
                if (cx.step == PC_STEP_CAPACITY && cx.defer_since)
                    accept_wait_capacity_until(l, deadline);
                else
                    pc__sleep_ms(ACCEPT_DEFER_RETRY_MS);
                continue;
            }
            if (e == WSAEACCES || e == WSAECONNRESET || e == WSAECONNABORTED || e == WSAENETDOWN ||
                e == WSAETIMEDOUT || e == WSAENOTCONN || e == WSAENETRESET) {
                /* the request was withdrawn (or reset) before it completed;
                 * Wine says WSAENOTCONN for a client that reset in the
                 * backlog. Not an error of ours: no back-off. */
                cx.defer_since = 0;
                bo.delay_ms = 0;
                continue;
            }
            /* WSAEMFILE, WSAENOBUFS, ...: keep serving, back off */
            accept_failed(l, &bo, pc__from_win32((unsigned long)e), e);
            continue;
        }
        bo.delay_ms = 0;
        if (plen <= 0 || peer.ss_family == AF_UNSPEC) sock_peer_addr(fd, &peer);

        if (pre) {
            if (!cx.called) { /* a stack that skipped the condition: decide now */
                int step = -1;
                if (accept_decide(l, (struct sockaddr *)&peer, (struct sockaddr *)&l->addr, &step,
                                  0) != PC_ACCEPT) {
                    sock_close_reset(fd);
                    continue;
                }
            } else if (!cx.reserved) { /* a stack that connected a refused request */
                sock_close_reset(fd);
                continue;
            }
            cx.reserved = 0;
            if (atomic_load(&l->stopping)) {
                accept_undo(l);
                sock_close_reset(fd);
                break;
            }
        } else {
            uint64_t dl = accept_pause_take(&capwait); /* 0: not deferred yet */
            int ok = post_handshake_verdict(l, &cx, fd, &peer, dl);
            cx.reserved = 0;
            if (!ok) continue;
        }
        hand_off(s, l, fd, &peer);
    }
}
