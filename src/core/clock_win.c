/* SPDX-License-Identifier: MIT */
/* Monotonic clock on Windows: QueryPerformanceCounter (clock.h). */
#include "clock.h"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

uint64_t pc__now_ns(void)
{
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    /* split to avoid overflow of c * 1e9 */
    uint64_t s = (uint64_t)(c.QuadPart / freq.QuadPart);
    uint64_t r = (uint64_t)(c.QuadPart % freq.QuadPart);
    return s * 1000000000ull + r * 1000000000ull / (uint64_t)freq.QuadPart;
}
