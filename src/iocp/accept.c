/* SPDX-License-Identifier: MIT */
/* The verdict pipeline as run by every accept loop (accept_posix.c after
 * accept4, accept_win.c inside the WSAAccept condition function). Runs on the
 * accept thread: no allocation, no lock, no blocking. The capacity step
 * reserves a slot in srv->active with a CAS, so max_connections holds
 * exactly even with several listeners; the filter (src/filter/pipeline.c)
 * runs steps 1-5 and any rejection gives the slot back. */
#include <stdio.h>

#include "server.h"

#include "core/clock.h"
#include "core/log.h"
#include "sock.h"

static int reserve_slot(pc_server_t *s)
{
    uint64_t a = atomic_load(&s->active);
    while (a < s->cfg.max_connections) {
        if (atomic_compare_exchange_weak(&s->active, &a, a + 1)) return 1;
    }
    return 0;
}

typedef struct cond_ctx_s {
    pc_server_t *s;
    const struct sockaddr *peer, *local;
} cond_ctx_t;

static pc_verdict_t run_condition(void *ud)
{
    cond_ctx_t *cx = ud;
    return cx->s->cfg.condition(cx->s->cfg.condition_user, cx->peer, cx->local);
}

pc_verdict_t accept_decide(listener_t *l, const struct sockaddr *peer, const struct sockaddr *local,
                           int *step, int again)
{
    pc_server_t *s = l->srv;
    int reserved = reserve_slot(s);
    addr_t a;
    if (addr_from_sockaddr(peer, &a) != 0) {
        /* not an IP peer: only capacity and the condition can judge it */
        a.family = 0;
    }
    cond_ctx_t cx = {s, peer, local};
    /* a trusted proxy's address is shared by all its clients: no per-source
     * limit on it here; its clients are limited after their PROXY header */
    int proxied = server_proxy_trusted(s, &a);
    l->pending_proxy = (uint8_t)proxied;
    unsigned flags = (proxied ? FILTER_SKIP_SOURCE : 0) | (again ? FILTER_RETRY : 0);
    pc_verdict_t v =
        filter_decide_ex(s->filter, l->idx, &a, pc__now_ns(), !reserved, flags,
                         s->cfg.condition ? run_condition : NULL, &cx, &l->pending_ticket, step);
    if (v != PC_ACCEPT && reserved) {
        atomic_fetch_sub(&s->active, 1);
        server_capacity_changed(s); /* another listener may wait for this slot */
    }
    return v;
}

void accept_undo(listener_t *l)
{
    pc_server_t *s = l->srv;
    filter_release(s->filter, &l->pending_ticket);
    atomic_fetch_sub(&s->active, 1);
    server_capacity_changed(s);
}

/* Wait on cap_cond until deadline or the listener's stop, and with
 * for_capacity until the server is under max_connections (returns 1 then,
 * else 0). A stop broadcasts cap_cond, so no wait outlasts it. */
static int cap_wait_until(listener_t *l, uint64_t deadline, int for_capacity)
{
    pc_server_t *s = l->srv;
    int ok = 0;
    pc__mutex_lock(&s->cap_lock);
    server_cap_wait_begin(s);
    for (;;) {
        if (atomic_load(&l->stopping)) break;
        if (for_capacity && atomic_load(&s->active) < s->cfg.max_connections) {
            ok = 1;
            break;
        }
        uint64_t now = pc__now_ms();
        if (now >= deadline) break;
        pc__cond_timedwait(&s->cap_cond, &s->cap_lock, (unsigned)(deadline - now));
    }
    server_cap_wait_end(s);
    pc__mutex_unlock(&s->cap_lock);
    return ok;
}

int accept_wait_capacity_until(listener_t *l, uint64_t deadline)
{
    return cap_wait_until(l, deadline, 1);
}

/* Count the connections queued on the listener beyond the p->held already
 * counted (the backlog is FIFO: those are at its head). */
static void count_queued(listener_t *l, accept_pause_t *p)
{
    unsigned q = accept_backlog_queued(l);
    if (q > p->held) {
        counter_add(&l->srv->deferred, q - p->held);
        p->held = q;
    }
}

void accept_wait_capacity(listener_t *l, accept_pause_t *p)
{
    pc_server_t *s = l->srv;
    if (atomic_load(&s->active) < s->cfg.max_connections) return;
    uint64_t deadline = pc__now_ms() + s->cfg.defer_timeout_ms;
    p->deadline = deadline;
    for (;;) { /* look at the backlog every ACCEPT_PAUSE_LOOK_MS, and at the end */
        uint64_t look = pc__now_ms() + ACCEPT_PAUSE_LOOK_MS;
        int ok = accept_wait_capacity_until(l, look < deadline ? look : deadline);
        if (atomic_load(&l->stopping)) break;
        count_queued(l, p);
        if (ok || pc__now_ms() >= deadline) break;
    }
}

uint64_t accept_pause_take(accept_pause_t *p)
{
    if (!p->held) return 0;
    p->held--;
    return p->deadline;
}

pc_verdict_t accept_hold_deferred(listener_t *l, const struct sockaddr *peer, int *step,
                                  uint64_t deadline)
{
    pc_server_t *s = l->srv;
    const struct sockaddr *local = (const struct sockaddr *)&l->addr;
    pc_verdict_t v = PC_DEFER;
    if (!deadline) { /* a new deferral; else the pause's, counted as it saw it */
        deadline = pc__now_ms() + s->cfg.defer_timeout_ms;
        counter_add(&s->deferred, 1);
    }
    /* once the condition was asked (it deferred), the steps before it are
     * counted: a capacity defer between two asks stops before them */
    int again = 0;
    while (v == PC_DEFER && !atomic_load(&l->stopping)) {
        if (pc__now_ms() >= deadline) break;
        again |= *step == PC_STEP_CONDITION;
        if (*step == PC_STEP_CAPACITY)
            accept_wait_capacity_until(l, deadline);
        else
            pc__sleep_ms(ACCEPT_DEFER_RETRY_MS);
        v = accept_decide(l, peer, local, step, again);
    }
    if (v == PC_DEFER) { /* deferred too long */
        v = PC_REJECT;
        counter_add(&s->rejected[*step >= 0 && *step < PC_STEP_COUNT ? *step : PC_STEP_CAPACITY],
                    1);
    }
    return v;
}

void accept_failed(listener_t *l, accept_backoff_t *b, int err, int os_err)
{
    counter_add(&l->srv->accept_errors, 1);
    uint64_t now = pc__now_ms();
    if (now - b->last_log_ms >= 1000) {
        PC_LOGW("accept failed: %s (os error %d; %u similar suppressed); backing off",
                pc_strerror(err ? err : PC_EUNKNOWN), os_err, b->suppressed);
        b->last_log_ms = now;
        b->suppressed = 0;
    } else {
        b->suppressed++;
    }
    b->delay_ms = b->delay_ms ? (b->delay_ms * 2 > 1000 ? 1000 : b->delay_ms * 2) : 10;
    /* not a plain sleep: the stop ends the step (pc_server_stop would
     * otherwise wait up to a second for it) */
    (void)cap_wait_until(l, pc__now_ms() + b->delay_ms, 0);
}

/* Not in endpoint.c, which the endpoint fuzzer builds alone (no sockets). */
void listener_name(sock_t fd, const struct sockaddr *asked, char *buf, size_t n)
{
    struct sockaddr_storage bound;
    if (sock_local_addr(fd, &bound) == 0 &&
        pc_format_endpoint((struct sockaddr *)&bound, buf, n) >= 0)
        return;
    if (!asked || pc_format_endpoint(asked, buf, n) < 0) snprintf(buf, n, "?");
}
