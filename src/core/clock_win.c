/* SPDX-License-Identifier: MIT */
/* Monotonic clock on Windows: QueryPerformanceCounter (clock.h). */
#include "clock.h"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <stdatomic.h>
#include <windows.h>

uint64_t pc__now_ns(void)
{
    /* fixed at boot; threads racing to cache it store the same value (a
     * relaxed atomic: no data race, and a plain load on x86) */
    static _Atomic int64_t g_freq;
    int64_t freq = atomic_load_explicit(&g_freq, memory_order_relaxed);
    if (!freq) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        freq = f.QuadPart;
        atomic_store_explicit(&g_freq, freq, memory_order_relaxed);
    }
    LARGE_INTEGER c;
    QueryPerformanceCounter(&c);
    /* split to avoid overflow of c * 1e9 */
    uint64_t s = (uint64_t)(c.QuadPart / freq);
    uint64_t r = (uint64_t)(c.QuadPart % freq);
    return s * 1000000000ull + r * 1000000000ull / (uint64_t)freq;
}
