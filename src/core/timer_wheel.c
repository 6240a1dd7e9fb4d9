/* SPDX-License-Identifier: MIT */
#include "timer_wheel.h"

#include <limits.h>

static void used_set(timer_wheel_t *w, unsigned slot)
{
    w->used[slot / 64u] |= (uint64_t)1 << (slot % 64u);
}

static void used_clear(timer_wheel_t *w, unsigned slot)
{
    w->used[slot / 64u] &= ~((uint64_t)1 << (slot % 64u));
}

static int used_test(const timer_wheel_t *w, unsigned slot)
{
    return (w->used[slot / 64u] >> (slot % 64u)) & 1u;
}

static unsigned lowest_bit(uint64_t v) /* v != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctzll(v);
#else
    unsigned n = 0;
    while (!(v & 1)) {
        v >>= 1;
        n++;
    }
    return n;
#endif
}

/* The tick at which a timer expiring at expire_ms runs: the first tick
 * boundary at or after it (never before it), or the next tick processed if
 * that has passed. */
static uint64_t timer_tick(const timer_wheel_t *w, uint64_t expire_ms)
{
    uint64_t tick = expire_ms / PC_WHEEL_TICK_MS + (expire_ms % PC_WHEEL_TICK_MS != 0);
    return tick < w->tick ? w->tick : tick;
}

/* Put t on the slot of tick (within a revolution of w->tick) or the far list. */
static void place(timer_wheel_t *w, wheel_timer_t *t, uint64_t tick)
{
    if (tick - w->tick < PC_WHEEL_SLOTS) {
        unsigned slot = (unsigned)(tick % PC_WHEEL_SLOTS);
        queue_insert_tail(&w->slots[slot], &t->link);
        used_set(w, slot);
    } else {
        queue_insert_tail(&w->far, &t->link);
        if (tick < w->far_tick) w->far_tick = tick;
    }
}

void wheel_init(timer_wheel_t *w, uint64_t now_ms)
{
    for (unsigned i = 0; i < PC_WHEEL_SLOTS; i++)
        queue_init(&w->slots[i]);
    for (unsigned i = 0; i < PC_WHEEL_WORDS; i++)
        w->used[i] = 0;
    queue_init(&w->far);
    w->far_tick = UINT64_MAX;
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
    place(w, t, timer_tick(w, expire_ms));
    w->count++;
}

void wheel_del(timer_wheel_t *w, wheel_timer_t *t)
{
    if (queue_linked(&t->link)) {
        queue_remove(&t->link);
        w->count--;
    }
}

/* Ticks from w->tick to the first slot holding timers, PC_WHEEL_SLOTS if
 * none does. Clears the bits of the emptied slots it passes. */
static unsigned first_used(timer_wheel_t *w)
{
    unsigned s0 = (unsigned)(w->tick % PC_WHEEL_SLOTS);
    /* from s0's word round to it again, where the bits below s0 come last */
    for (unsigned k = 0; k <= PC_WHEEL_WORDS; k++) {
        unsigned wi = (s0 / 64u + k) % PC_WHEEL_WORDS;
        uint64_t bits = w->used[wi];
        uint64_t below = ((uint64_t)1 << (s0 % 64u)) - 1;
        if (k == 0)
            bits &= ~below;
        else if (k == PC_WHEEL_WORDS)
            bits &= below;
        while (bits) {
            unsigned slot = wi * 64u + lowest_bit(bits);
            bits &= bits - 1;
            if (queue_empty(&w->slots[slot])) {
                used_clear(w, slot);
                continue;
            }
            return (slot + PC_WHEEL_SLOTS - s0) % PC_WHEEL_SLOTS;
        }
    }
    return PC_WHEEL_SLOTS;
}

int wheel_timeout(timer_wheel_t *w, uint64_t now_ms)
{
    if (!w->count) return -1;
    uint64_t due = UINT64_MAX; /* the tick to wake at */
    unsigned d = first_used(w);
    if (d < PC_WHEEL_SLOTS) due = w->tick + d;
    /* the far list's earliest (wheel_expire scans the list then) */
    if (!queue_empty(&w->far)) {
        uint64_t scan = w->far_tick < w->tick ? w->tick : w->far_tick;
        if (scan < due) due = scan;
    }
    if (due == UINT64_MAX) return 0; /* count says armed: look now */
    if (due > UINT64_MAX / PC_WHEEL_TICK_MS) return INT_MAX;
    uint64_t due_ms = due * PC_WHEEL_TICK_MS;
    if (due_ms <= now_ms) return 0;
    return due_ms - now_ms > (uint64_t)INT_MAX ? INT_MAX : (int)(due_ms - now_ms);
}

/* The far list, once the tick of its earliest timer has come (w->tick is
 * now_tick + 1): the due ones expire, those due within a revolution of
 * w->tick move to their slots, far_tick becomes the earliest of the rest.
 * Those are a revolution or more away, so the list is scanned at most once
 * per revolution, as the slots are visited, however many timers it holds. */
static unsigned far_scan(timer_wheel_t *w, uint64_t now_tick, queue_t *expired)
{
    unsigned n = 0;
    uint64_t least = UINT64_MAX;
    queue_t *q = w->far.next;
    while (q != &w->far) {
        queue_t *nx = q->next;
        wheel_timer_t *tm = pc_container_of(q, wheel_timer_t, link);
        uint64_t tick = timer_tick(w, tm->expire_ms);
        if (tm->expire_ms <= now_tick * PC_WHEEL_TICK_MS) {
            queue_remove(q);
            queue_insert_tail(expired, q);
            w->count--;
            n++;
        } else if (tick - w->tick < PC_WHEEL_SLOTS) {
            queue_remove(q);
            place(w, tm, tick);
        } else if (tick < least) {
            least = tick;
        }
        q = nx;
    }
    w->far_tick = least;
    return n;
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
        unsigned slot = (unsigned)(t % PC_WHEEL_SLOTS);
        if (!used_test(w, slot)) continue;
        queue_t *head = &w->slots[slot];
        queue_t *q = head->next;
        while (q != head) {
            queue_t *nx = q->next;
            wheel_timer_t *tm = pc_container_of(q, wheel_timer_t, link);
            /* a slot holds one tick's timers; the check keeps "never
             * before its expiry" local */
            if (tm->expire_ms <= now_tick * PC_WHEEL_TICK_MS) {
                queue_remove(q);
                queue_insert_tail(expired, q);
                w->count--;
                n++;
            }
            q = nx;
        }
        if (queue_empty(head)) used_clear(w, slot);
    }
    w->tick = now_tick + 1;
    if (!queue_empty(&w->far) && w->far_tick <= now_tick) n += far_scan(w, now_tick, expired);
    return n;
}
