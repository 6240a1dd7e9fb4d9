/* SPDX-License-Identifier: MIT */
/* Monotonic clock. */
#ifndef PC_CORE_CLOCK_H
#define PC_CORE_CLOCK_H

#include <stdint.h>

/* Monotonic time in nanoseconds / milliseconds since an arbitrary origin. */
uint64_t pc__now_ns(void);
uint64_t pc__now_ms(void);

#endif
