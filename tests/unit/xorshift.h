/* SPDX-License-Identifier: MIT */
/* Marsaglia's xorshift64 for unit tests' random inputs: fast, and the same
 * sequence from the same seed on every platform, so a failure repeats. */
#ifndef PC_TEST_XORSHIFT_H
#define PC_TEST_XORSHIFT_H

#include <stdint.h>

/* Advance *state (never 0) and return its new value. */
static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

#endif
