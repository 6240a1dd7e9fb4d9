/* SPDX-License-Identifier: MIT */
/* Monotonic clock on POSIX: CLOCK_MONOTONIC (clock.h). */
#include "clock.h"

#include <time.h>

uint64_t pc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
