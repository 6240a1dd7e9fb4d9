/* SPDX-License-Identifier: MIT */
/* The worker threads' loop: wait for completions on the port, dispatch each
 * by its op tag (the one place that reads op->tag to find the op's owner:
 * posted work, server timers, worker exit, a connection's strand), then run
 * the expired connection and server timers. Also pc_server_post, whose
 * record the loop runs. */
#include "server.h"

#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

typedef struct post_rec_s {
    op_t op;
    void (*fn)(pc_server_t *s, void *arg);
    void *arg;
} post_rec_t;

#define WAIT_BATCH    64
#define FREE_FLUSH_MS 10 /* longest a worker keeps released records (conn_release) */
/* A long wait may end late by a share of it: Linux gives epoll_wait a timer
 * slack of 0.1% of its timeout (0.5% for a niced thread, up to 100 ms), so
 * a worker waiting 600 s for its next timer woke up to 100 ms after it. A
 * wait is cut by 1/WAIT_SLACK_DIV, more than that slack, and the worker
 * waits the rest: a few wake-ups per long wait, the last one short enough
 * (under WAIT_SLACK_DIV ms) to end within a millisecond of the tick. */
#define WAIT_SLACK_DIV 200
/* An exiting worker waits (polling every EXIT_POLL_MS) until its closed
 * connections are released, i.e. the backend has returned their cancelled
 * operations, but at most EXIT_WAIT_MS: then it logs and leaves them to
 * pc_server_destroy, which closes the port. */
#define EXIT_POLL_MS 10
#define EXIT_WAIT_MS 5000

/* ---- workers ------------------------------------------------------------------ */

/* The connection whose timer's wheel link is e. */
static pc_conn_t *timer_conn(queue_t *e)
{
    return pc_container_of(pc_container_of(e, wheel_timer_t, link), pc_conn_t, timer);
}

int worker_wait_ms(int conn_ms, int timer_ms)
{
    int t = conn_ms;
    if (timer_ms >= 0 && (t < 0 || timer_ms < t)) t = timer_ms;
    /* t / WAIT_SLACK_DIV rounded up, without t + WAIT_SLACK_DIV - 1: t may be
     * INT_MAX (a deadline ~25 days or more away), and that sum overflowed
     * into a negative wait, which the backends take as no deadline */
    if (t > WAIT_SLACK_DIV) t -= t / WAIT_SLACK_DIV + (t % WAIT_SLACK_DIV != 0);
    return t;
}

void worker_main(void *arg)
{
    worker_t *w = arg;
    pc_server_t *s = w->srv;
    completion_t cpl[WAIT_BATCH];
    for (;;) {
        uint64_t now = pc__now_ms();
        pc__mutex_lock(&w->wheel_lock);
        int timeout = wheel_timeout(&w->wheel, now);
        int stimeout = wheel_timeout(&w->swheel, now);
        pc__mutex_unlock(&w->wheel_lock);
        timeout = worker_wait_ms(timeout, stimeout);
        /* released records are not kept from the table for long: a worker
         * holding some wakes within FREE_FLUSH_MS to hand them over */
        if (w->free_head && (timeout < 0 || timeout > FREE_FLUSH_MS)) timeout = FREE_FLUSH_MS;
        if (w->exiting) timeout = atomic_load(&w->unreleased) ? EXIT_POLL_MS : 0;
        int drained;
        int n = port_wait(s->port, w->idx, cpl, WAIT_BATCH, timeout, &drained);
        uint64_t woke = pc__now_ms();
        /* a drained wait took everything that had completed by now (on a
         * shared port, what another worker holds undispatched is the
         * connection's own check: port_input_held in handle_timer) */
        int seen_all = n >= 0 && drained;
        if (n < 0) {
            PC_LOGE("worker %d: waiting for completions failed: %s", w->idx, pc_strerror(n));
            pc__sleep_ms(10);
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            op_t *op = cpl[i].op;
            switch (op->tag) {
            case TAG_POST: {
                post_rec_t *pr = (post_rec_t *)op;
                pr->fn(s, pr->arg);
                pc__free(pr);
                break;
            }
            case TAG_STIMER:
                stimer_arm_op(w, op);
                break;
            case TAG_EXIT:
                if (w->exiting) /* shared port: that exit was another worker's */
                    port_post(s->port, w->idx, op);
                w->exiting = 1;
                break;
            case TAG_CONN_RECV:
                conn_dispatch(w, pc_container_of(op, pc_conn_t, recv_op), &cpl[i]);
                break;
            case TAG_CONN_KICK:
                conn_kicks_run(w, pc_container_of(op, worker_t, kick_op));
                break;
            default: /* TAG_CONN_SEND, TAG_CONN_CONNECT */
                conn_dispatch(w, pc_container_of(op, conn_tx_t, wr_op)->u.c, &cpl[i]);
                break;
            }
        }
        /* ... once it is dispatched: what the callbacks' operations staged
         * for the next wait (a reader handed its next held buffer) came in
         * before, and is not yet */
        if (seen_all && !port_staged(s->port, w->idx)) w->seen_ms = woke;
        /* an overloaded worker (no drained wait for a while) still times
         * connections out, judging at most JUDGE_LAG_MS behind its last wait
         * (not behind the clock: a long batch must not count as overload) */
        if (woke > JUDGE_LAG_MS && w->seen_ms < woke - JUDGE_LAG_MS)
            w->seen_ms = woke - JUDGE_LAG_MS;
        /* expired timers: each is claimed while the wheel is locked, so that
         * neither a disarm nor the connection's release can race with it
         * (conn_timer_claim); the claimed ones run after unlocking */
        queue_t expired, run, sexpired, sdue;
        queue_init(&expired);
        queue_init(&run);
        queue_init(&sexpired);
        queue_init(&sdue);
        pc__mutex_lock(&w->wheel_lock);
        /* connection deadlines by what this worker has seen: one that
         * passed while the batch ran waits for the next wait (timeout 0),
         * which takes the bytes that came meanwhile first; server timers by
         * the clock */
        wheel_expire(&w->wheel, w->seen_ms, &expired);
        wheel_expire(&w->swheel, pc__now_ms(), &sexpired);
        stimer_claim(&sexpired, &sdue);
        while (!queue_empty(&expired)) {
            queue_t *e = queue_head(&expired);
            queue_remove(e);
            if (conn_timer_claim(timer_conn(e))) queue_insert_tail(&run, e);
        }
        pc__mutex_unlock(&w->wheel_lock);
        while (!queue_empty(&run)) {
            queue_t *e = queue_head(&run);
            queue_remove(e);
            conn_timer_expired(w, timer_conn(e));
        }
        stimer_run_expired(w, &sdue);
        if (n == 0) conn_release_flush(w);
        if (w->exiting && n == 0) {
            /* io_uring: a cancelled operation may complete later than the
             * first wait that finds nothing (and with DEFER_TASKRUN only
             * while this thread enters the ring) */
            unsigned left = atomic_load(&w->unreleased);
            if (!left) break;
            if (!w->exit_by) w->exit_by = woke + EXIT_WAIT_MS;
            if (woke >= w->exit_by) {
                PC_LOGE("worker %d: %u closed connection(s) not released %d ms after the stop "
                        "(operations still in the backend); pc_server_destroy frees them",
                        w->idx, left, EXIT_WAIT_MS);
                break;
            }
        }
    }
    port_leave(s->port, w->idx);
}

int pc_server_post(pc_server_t *s, void (*fn)(pc_server_t *s, void *arg), void *arg)
{
    if (!s || !fn) return PC_EINVAL;
    if (!atomic_load(&s->started) || atomic_load(&s->posts_closed)) return PC_ENOTCONN;
    post_rec_t *pr = pc__malloc(sizeof *pr);
    if (!pr) return PC_ENOMEM;
    memset(&pr->op, 0, sizeof pr->op);
    pr->op.tag = TAG_POST;
    pr->fn = fn;
    pr->arg = arg;
    int rc = server_post_op(s, &pr->op);
    if (rc < 0) pc__free(pr);
    return rc;
}
