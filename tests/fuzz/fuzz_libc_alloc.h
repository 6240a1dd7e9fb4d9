/* SPDX-License-Identifier: MIT */
/* For fuzz targets: route the library's allocations to the C library, so
 * that ASan sees every block (mimalloc's are invisible to it). Call from
 * LLVMFuzzerInitialize; aborts if the allocator cannot be set. */
#ifndef PC_FUZZ_LIBC_ALLOC_H
#define PC_FUZZ_LIBC_ALLOC_H

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

static inline void fuzz_use_libc_allocator(void)
{
    pc_allocator_t a = {fz_sys_malloc, fz_sys_calloc, fz_sys_realloc, fz_sys_free, NULL};
    if (pc_set_allocator(&a) != 0) abort();
}

#endif
