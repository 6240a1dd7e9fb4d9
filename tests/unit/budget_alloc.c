/* SPDX-License-Identifier: MIT */
#include "budget_alloc.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_long g_budget = -1, g_live;

static int take(void)
{
    if (atomic_load(&g_budget) < 0) return 1;
    return atomic_fetch_sub(&g_budget, 1) > 0;
}

static void *b_malloc(void *u, size_t n)
{
    (void)u;
    if (!take()) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&g_live, 1);
    return p;
}

static void *b_calloc(void *u, size_t n, size_t s)
{
    (void)u;
    if (!take()) return NULL;
    void *p = calloc(n, s);
    if (p) atomic_fetch_add(&g_live, 1);
    return p;
}

static void *b_realloc(void *u, void *p, size_t n)
{
    (void)u;
    if (!take()) return NULL;
    void *q = realloc(p, n);
    if (q && !p) atomic_fetch_add(&g_live, 1);
    return q;
}

static void b_free(void *u, void *p)
{
    (void)u;
    if (p) atomic_fetch_sub(&g_live, 1);
    free(p);
}

const pc_allocator_t budget_allocator = {b_malloc, b_calloc, b_realloc, b_free, NULL};

void budget_alloc_reset(long budget)
{
    atomic_store(&g_budget, budget < 0 ? -1 : budget);
    atomic_store(&g_live, 0);
}

long budget_alloc_live(void)
{
    return atomic_load(&g_live);
}
