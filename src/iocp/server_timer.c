/* SPDX-License-Identifier: MIT */
/* Server timers (pc_server_timer): records on the workers' server wheels.
 *
 * A new timer is posted to a worker (TAG_STIMER), which puts it on its own
 * wheel: the worker that will expire it is awake when the timer arrives and
 * computes its next wait with it (a worker sleeping in port_wait would not
 * see a timer another thread added to its wheel). A repeating timer goes
 * back on the wheel of the worker that ran it.
 *
 * Every record is in the server's registry (stimer_lock) from creation to
 * its free: a table chained by id, so a cancel by id costs the same with
 * 100k live timers as with one (the cancel at stop walks the table).
 * Its state says who holds it: ARMING (the op is on its way to a worker),
 * ARMED (on wk's wheel, or just taken off it by wk's expiry and not yet
 * looked at), RUNNING (fn runs on wk). Cancel frees what is on a wheel and
 * marks the rest, which its holder frees. Expiry moves a record from the
 * wheel to the worker's own list through a second link (stimer_claim, under
 * the wheel_lock), so a record on that list is off the wheel for cancel,
 * which never touches the list. Lock order: stimer_lock, then a wheel_lock;
 * expiry takes the wheel_lock alone. */
#include "server.h"

#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"

enum { ST_ARMING = 0, ST_ARMED, ST_RUNNING };

typedef struct stimer_s {
    op_t op; /* TAG_STIMER while ARMING */
    wheel_timer_t wt;
    queue_t due;            /* on the expiring worker's list (stimer_claim) */
    struct stimer_s *hnext; /* s->stimer_tab's chain */
    int64_t id;
    void (*fn)(pc_server_t *s, void *arg);
    void *arg;
    uint64_t at; /* the deadline of the next run */
    unsigned period_ms;
    uint8_t repeat;
    uint8_t state;
    uint8_t cancelled;
    int wk; /* the worker holding it (ARMED, RUNNING) */
} stimer_t;

void stimer_init(pc_server_t *s)
{
    pc__mutex_init(&s->stimer_lock);
    s->stimer_tab = NULL;
    s->stimer_tab_n = s->stimer_count = 0;
    s->stimer_next_id = 1;
    s->stimer_closed = 0;
}

/* The chain of s->stimer_tab (a power of two long) that holds id. */
static stimer_t **stimer_chain(pc_server_t *s, int64_t id)
{
    return &s->stimer_tab[(uint64_t)id & (s->stimer_tab_n - 1)];
}

/* Put t at the head of its chain in tab (n chains, a power of two). */
static void stimer_chain_push(stimer_t **tab, size_t n, stimer_t *t)
{
    stimer_t **head = &tab[(uint64_t)t->id & (n - 1)];
    t->hnext = *head;
    *head = t;
}

/* Under stimer_lock: the record with this id, or NULL. */
static stimer_t *stimer_find(pc_server_t *s, int64_t id)
{
    if (!s->stimer_tab) return NULL;
    stimer_t *t = *stimer_chain(s, id);
    while (t && t->id != id)
        t = t->hnext;
    return t;
}

enum { STIMER_TAB_MIN = 64 };

/* Under stimer_lock: move every record into a table of n chains. Returns
 * 0, or PC_ENOMEM with the table as it was. */
static int stimer_tab_resize(pc_server_t *s, size_t n)
{
    stimer_t **tab = pc__calloc(n, sizeof *tab);
    if (!tab) return PC_ENOMEM;
    for (size_t i = 0; i < s->stimer_tab_n; i++) {
        stimer_t *t = s->stimer_tab[i];
        while (t) {
            stimer_t *nx = t->hnext;
            stimer_chain_push(tab, n, t);
            t = nx;
        }
    }
    pc__free(s->stimer_tab);
    s->stimer_tab = tab;
    s->stimer_tab_n = n;
    return 0;
}

/* Under stimer_lock: room in the table for one more record, doubling it
 * (ids are sequential, so the low bits spread them) once it holds two per
 * chain. Returns 0, or PC_ENOMEM when there is no table at all; a table
 * that cannot grow stays, with longer chains. */
static int stimer_tab_room(pc_server_t *s)
{
    if (s->stimer_tab && s->stimer_count < 2 * s->stimer_tab_n) return 0;
    int rc = stimer_tab_resize(s, s->stimer_tab ? 2 * s->stimer_tab_n : STIMER_TAB_MIN);
    return s->stimer_tab ? 0 : rc;
}

/* Under stimer_lock. Once a spike of timers is over, the table halves
 * when it holds fewer than one record per four chains (it doubled at two
 * per chain, so a count going up and down around one size never resizes
 * every time), down to STIMER_TAB_MIN chains. Not while stop cancels
 * (stimer_closed): stimer_cancel_all walks the chains. A table that cannot
 * shrink stays as it is. */
static void stimer_free(pc_server_t *s, stimer_t *t)
{
    stimer_t **pp = stimer_chain(s, t->id);
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    s->stimer_count--;
    pc__free(t);
    if (!s->stimer_closed && s->stimer_tab_n > STIMER_TAB_MIN &&
        s->stimer_count < s->stimer_tab_n / 4)
        (void)stimer_tab_resize(s, s->stimer_tab_n / 2);
}

/* Under stimer_lock: put t on w's server wheel. */
static void stimer_put(worker_t *w, stimer_t *t)
{
    t->state = ST_ARMED;
    t->wk = w->idx;
    pc__mutex_lock(&w->wheel_lock);
    wheel_add(&w->swheel, &t->wt, t->at);
    pc__mutex_unlock(&w->wheel_lock);
}

int64_t pc_server_timer(pc_server_t *s, unsigned ms, int repeat,
                        void (*fn)(pc_server_t *s, void *arg), void *arg)
{
    if (!s || !fn || (repeat && ms == 0)) return PC_EINVAL;
    if (!atomic_load(&s->started) || atomic_load(&s->posts_closed)) return PC_ENOTCONN;
    stimer_t *t = pc__malloc(sizeof *t);
    if (!t) return PC_ENOMEM;
    memset(t, 0, sizeof *t);
    t->op.tag = TAG_STIMER;
    wheel_timer_init(&t->wt);
    t->fn = fn;
    t->arg = arg;
    t->at = pc__deadline_ms(ms); /* never early */
    t->period_ms = ms;
    t->repeat = repeat != 0;
    t->state = ST_ARMING;
    pc__mutex_lock(&s->stimer_lock);
    if (s->stimer_closed) {
        pc__mutex_unlock(&s->stimer_lock);
        pc__free(t);
        return PC_ENOTCONN;
    }
    if (stimer_tab_room(s) < 0) {
        pc__mutex_unlock(&s->stimer_lock);
        pc__free(t);
        return PC_ENOMEM;
    }
    t->id = s->stimer_next_id++;
    stimer_chain_push(s->stimer_tab, s->stimer_tab_n, t);
    s->stimer_count++;
    int64_t id = t->id;
    pc__mutex_unlock(&s->stimer_lock);
    int rc = server_post_op(s, &t->op);
    if (rc == 0) return id;
    /* no worker will receive it, so nobody else holds it (a cancel
     * meanwhile only marked it) */
    pc__mutex_lock(&s->stimer_lock);
    stimer_free(s, t);
    pc__mutex_unlock(&s->stimer_lock);
    return rc;
}

void stimer_arm_op(worker_t *w, op_t *op)
{
    stimer_t *t = (stimer_t *)op;
    pc_server_t *s = w->srv;
    pc__mutex_lock(&s->stimer_lock);
    if (t->cancelled)
        stimer_free(s, t);
    else
        stimer_put(w, t);
    pc__mutex_unlock(&s->stimer_lock);
}

void stimer_claim(queue_t *expired, queue_t *due)
{
    while (!queue_empty(expired)) {
        queue_t *e = queue_head(expired);
        queue_remove(e); /* wheel_armed() is false from here on */
        stimer_t *t = pc_container_of(pc_container_of(e, wheel_timer_t, link), stimer_t, wt);
        queue_insert_tail(due, &t->due);
    }
}

void stimer_run_expired(worker_t *w, queue_t *due)
{
    pc_server_t *s = w->srv;
    while (!queue_empty(due)) {
        queue_t *e = queue_head(due);
        queue_remove(e);
        stimer_t *t = pc_container_of(e, stimer_t, due);
        pc__mutex_lock(&s->stimer_lock);
        if (t->cancelled) {
            stimer_free(s, t);
            pc__mutex_unlock(&s->stimer_lock);
            continue;
        }
        t->state = ST_RUNNING;
        t->wk = w->idx;
        pc__mutex_unlock(&s->stimer_lock);
        t->fn(s, t->arg);
        pc__mutex_lock(&s->stimer_lock);
        if (t->cancelled || !t->repeat) {
            stimer_free(s, t);
        } else {
            /* the next period from the planned time, but never in the past
             * (a slow run or a stall skips the missed periods) */
            uint64_t now = pc__now_ms();
            t->at += t->period_ms;
            if (t->at < now) t->at = pc__deadline_ms(t->period_ms);
            stimer_put(w, t);
        }
        pc__mutex_unlock(&s->stimer_lock);
    }
}

/* Under stimer_lock: cancel t. Returns 0, or PC_EBUSY if it runs on
 * another thread now. */
static int stimer_cancel_locked(pc_server_t *s, stimer_t *t)
{
    t->cancelled = 1;
    if (t->state == ST_RUNNING) return pc__thread_is_self(s->workers[t->wk].thread) ? 0 : PC_EBUSY;
    if (t->state == ST_ARMED) {
        worker_t *w = &s->workers[t->wk];
        pc__mutex_lock(&w->wheel_lock);
        int on_wheel = wheel_armed(&t->wt);
        wheel_del(&w->swheel, &t->wt);
        pc__mutex_unlock(&w->wheel_lock);
        /* off the wheel already: the expiring worker holds it and frees it */
        if (on_wheel) stimer_free(s, t);
    }
    return 0; /* ARMING: the worker receiving the op frees it */
}

int pc_server_timer_cancel(pc_server_t *s, int64_t id)
{
    if (!s || id <= 0) return PC_ENOENT;
    int rc = PC_ENOENT;
    pc__mutex_lock(&s->stimer_lock);
    stimer_t *t = stimer_find(s, id);
    if (t && !t->cancelled)
        rc = stimer_cancel_locked(s, t);
    else if (t && t->state == ST_RUNNING && !pc__thread_is_self(s->workers[t->wk].thread))
        rc = PC_EBUSY; /* cancelled, its last run not over: the caller may wait for it so */
    pc__mutex_unlock(&s->stimer_lock);
    return rc;
}

void stimer_cancel_all(pc_server_t *s)
{
    pc__mutex_lock(&s->stimer_lock);
    s->stimer_closed = 1;
    for (size_t i = 0; i < s->stimer_tab_n; i++) {
        stimer_t *t = s->stimer_tab[i];
        while (t) {
            stimer_t *nx = t->hnext; /* t may be freed */
            if (!t->cancelled) stimer_cancel_locked(s, t);
            t = nx;
        }
    }
    pc__mutex_unlock(&s->stimer_lock);
}

void stimer_destroy(pc_server_t *s)
{
    /* the workers are gone: whatever is left is nobody's */
    s->stimer_closed = 1; /* no resize under the walk below */
    for (size_t i = 0; i < s->stimer_tab_n; i++)
        while (s->stimer_tab[i])
            stimer_free(s, s->stimer_tab[i]);
    pc__free(s->stimer_tab);
    s->stimer_tab = NULL;
    s->stimer_tab_n = 0;
    pc__mutex_destroy(&s->stimer_lock);
}
