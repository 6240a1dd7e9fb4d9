/* SPDX-License-Identifier: MIT */
/* A hashed timing wheel: O(1) add and remove, expiry in tick order. One wheel
 * per worker; not thread-safe (its owner serialises access). Drives idle,
 * header, write and close-linger deadlines. */
#ifndef PC_CORE_TIMER_WHEEL_H
#define PC_CORE_TIMER_WHEEL_H

#include <stdint.h>
#include "queue.h"

#define PC_WHEEL_TICK_MS 10u
#define PC_WHEEL_SLOTS   512u /* 5.12 s per revolution; longer timers go round */

typedef struct wheel_timer_s {
    queue_t link;
    uint64_t expire_ms;
} wheel_timer_t;

typedef struct timer_wheel_s {
    queue_t slots[PC_WHEEL_SLOTS];
    uint64_t tick;  /* next tick to process */
    unsigned count; /* armed timers */
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
/* Milliseconds until the next tick that may expire something, -1 if no
 * timer is armed. */
int wheel_timeout(const timer_wheel_t *w, uint64_t now_ms);
/* Move every timer whose tick has come (expire_ms <= now_ms rounded down
 * to the tick) to *expired (disarmed from the
 * wheel, linked into expired). Returns how many. */
unsigned wheel_expire(timer_wheel_t *w, uint64_t now_ms, queue_t *expired);

#endif
