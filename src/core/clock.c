#include "clock.h"

#ifdef _WIN32
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
#else
#include <time.h>

uint64_t pc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
#endif

uint64_t pc__now_ms(void)
{
    return pc__now_ns() / 1000000ull;
}
