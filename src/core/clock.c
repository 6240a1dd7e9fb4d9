/* SPDX-License-Identifier: MIT */
#include "clock.h"

/* pc__now_ns is per platform: clock_posix.c, clock_win.c. */
uint64_t pc__now_ms(void)
{
    return pc__now_ns() / 1000000ull;
}

uint64_t pc__deadline_ms(uint64_t ms)
{
    return (pc__now_ns() + 999999ull) / 1000000ull + ms;
}
