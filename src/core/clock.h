/* SPDX-License-Identifier: MIT */
/* Monotonic clock. */
#ifndef PC_CORE_CLOCK_H
#define PC_CORE_CLOCK_H

#include <stdint.h>

/* Monotonic time in nanoseconds / milliseconds since an arbitrary origin. */
uint64_t pc__now_ns(void);
uint64_t pc__now_ms(void);
/* The millisecond deadline ms from now, rounded up so that a timer due at
 * it (pc__now_ms() >= deadline) never runs early: pc__now_ms() truncates,
 * and now + ms could be reached up to 1 ms before ms have passed. */
uint64_t pc__deadline_ms(uint64_t ms);

#endif
