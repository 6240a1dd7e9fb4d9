/* SPDX-License-Identifier: MIT */
/* A hashed timing wheel: O(1) add and remove, expiry in tick order. One wheel
 * per worker; not thread-safe (its owner serialises access). Drives idle,
 * header, write and close-linger deadlines.
 *
 * The slots hold the timers due within one revolution (PC_WHEEL_SLOTS ticks
 * from the first tick not yet processed), one tick per slot, and a bitmap
 * says which slots may hold any, so the next tick with something to run is
 * found in a few words. Longer timers wait on the far list, which is
 * scanned when the tick of its earliest timer comes (that timer then
 * expires): those due within a revolution move to their slots. So a worker
 * wakes for the ticks that run something, and for a far timer removed
 * before its tick (the next scan is not put off by a removal). */
#ifndef PC_CORE_TIMER_WHEEL_H
#define PC_CORE_TIMER_WHEEL_H

#include <stdint.h>
#include "queue.h"

#define PC_WHEEL_TICK_MS 10u
#define PC_WHEEL_SLOTS   512u /* 5.12 s per revolution; longer timers wait on the far list */
#define PC_WHEEL_WORDS   (PC_WHEEL_SLOTS / 64u)

typedef struct wheel_timer_s {
    queue_t link;
    uint64_t expire_ms;
} wheel_timer_t;

typedef struct timer_wheel_s {
    queue_t slots[PC_WHEEL_SLOTS];
    /* bit set: the slot may hold timers; clear: it holds none (a removal
     * leaves its bit set; the next look at the slot clears it) */
    uint64_t used[PC_WHEEL_WORDS];
    queue_t far;       /* timers due a revolution or more after tick */
    uint64_t far_tick; /* no far timer is due before this tick (UINT64_MAX: none) */
    uint64_t tick;     /* next tick to process */
    unsigned count;    /* armed timers */
} timer_wheel_t;

void wheel_init(timer_wheel_t *w, uint64_t now_ms);
void wheel_timer_init(wheel_timer_t *t);
/* Arm (or re-arm) t to expire at expire_ms. */
void wheel_add(timer_wheel_t *w, wheel_timer_t *t, uint64_t expire_ms);
/* Disarm t if armed. */
void wheel_del(timer_wheel_t *w, wheel_timer_t *t);
static inline int wheel_armed(const wheel_timer_t *t)
{
    return queue_linked(&t->link);
}
/* Milliseconds from now_ms until the first tick that expires something (0
 * if it has come): never later, and earlier only when a far timer was
 * removed before its tick; capped at INT_MAX. -1 if no timer is armed. Not
 * const: it forgets the slots it finds emptied by removals. */
int wheel_timeout(timer_wheel_t *w, uint64_t now_ms);
/* Move every timer whose tick has come (expire_ms <= now_ms rounded down
 * to the tick) to *expired (disarmed from the wheel, linked into expired).
 * Returns how many. While linked into any list a timer counts as armed, so
 * no wheel_add, wheel_del or wheel_armed may see it before it is unlinked
 * (queue_remove): wheel_del would count it off the wheel a second time. */
unsigned wheel_expire(timer_wheel_t *w, uint64_t now_ms, queue_t *expired);

#endif
