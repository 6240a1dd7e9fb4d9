/* SPDX-License-Identifier: MIT */
/* What several fuzz targets need: the library's allocations routed to the
 * C library, and a pseudo-random generator seeded by the input (so a
 * finding replays). */
#ifndef PC_FUZZ_COMMON_H
#define PC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "portcullis.h"

static void *fz_sys_malloc(void *u, size_t n)
{
    (void)u;
    return malloc(n);
}
static void *fz_sys_calloc(void *u, size_t n, size_t sz)
{
    (void)u;
    return calloc(n, sz);
}
static void *fz_sys_realloc(void *u, void *p, size_t n)
{
    (void)u;
    return realloc(p, n);
}
static void fz_sys_free(void *u, void *p)
{
    (void)u;
    free(p);
}

/* Route the library's allocations to the C library, so that ASan sees
 * every block (mimalloc's are invisible to it). Call from
 * LLVMFuzzerInitialize; aborts if the allocator cannot be set. */
static inline void fuzz_use_libc_allocator(void)
{
    pc_allocator_t a = {fz_sys_malloc, fz_sys_calloc, fz_sys_realloc, fz_sys_free, NULL};
    if (pc_set_allocator(&a) != 0) abort();
}

static uint64_t g_rng;

/* Seed the generator from the input (FNV-1a of its bytes). */
static inline void rng_seed(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    g_rng = h;
}

/* The next 64 random bits (splitmix64). */
static inline uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
