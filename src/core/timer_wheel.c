/* SPDX-License-Identifier: MIT */
#include "timer_wheel.h"

void wheel_init(timer_wheel_t *w, uint64_t now_ms)
{
    for (unsigned i = 0; i < PC_WHEEL_SLOTS; i++)
        queue_init(&w->slots[i]);
    w->tick = now_ms / PC_WHEEL_TICK_MS;
    w->count = 0;
}

void wheel_timer_init(wheel_timer_t *t)
{
    queue_init(&t->link);
    t->expire_ms = 0;
}

void wheel_add(timer_wheel_t *w, wheel_timer_t *t, uint64_t expire_ms)
{
    if (queue_linked(&t->link)) {
        queue_remove(&t->link);
        w->count--;
    }
    t->expire_ms = expire_ms;
    /* round up: a timer fires at the first tick boundary at or after its
     * expiry, never before it */
    uint64_t tick = (expire_ms + PC_WHEEL_TICK_MS - 1) / PC_WHEEL_TICK_MS;
    if (tick < w->tick) tick = w->tick; /* already due: next processed tick */
    queue_insert_tail(&w->slots[tick % PC_WHEEL_SLOTS], &t->link);
    w->count++;
}

void wheel_del(timer_wheel_t *w, wheel_timer_t *t)
{
    if (queue_linked(&t->link)) {
        queue_remove(&t->link);
        w->count--;
    }
}

int wheel_timeout(const timer_wheel_t *w, uint64_t now_ms)
{
    if (!w->count) return -1;
    uint64_t due = w->tick * PC_WHEEL_TICK_MS;
    return due <= now_ms ? 0 : (int)(due - now_ms);
}

unsigned wheel_expire(timer_wheel_t *w, uint64_t now_ms, queue_t *expired)
{
    uint64_t now_tick = now_ms / PC_WHEEL_TICK_MS;
    unsigned n = 0;
    if (now_tick < w->tick) return 0; /* this tick was processed already */
    if (!w->count) {
        w->tick = now_tick + 1;
        return 0;
    }
    /* Visit each slot at most once per call, even after a long stall. */
    uint64_t last = now_tick;
    if (last - w->tick >= PC_WHEEL_SLOTS) last = w->tick + PC_WHEEL_SLOTS - 1;
    for (uint64_t t = w->tick; t <= last; t++) {
        queue_t *slot = &w->slots[t % PC_WHEEL_SLOTS];
        queue_t *q = slot->next;
        while (q != slot) {
            queue_t *nx = q->next;
            wheel_timer_t *tm = pc_container_of(q, wheel_timer_t, link);
            /* due when its tick has come (later rounds share the slot) */
            if (tm->expire_ms <= now_tick * PC_WHEEL_TICK_MS) {
                queue_remove(q);
                queue_insert_tail(expired, q);
                w->count--;
                n++;
            }
            q = nx;
        }
    }
    w->tick = now_tick + 1;
    return n;
}
