/* SPDX-License-Identifier: MIT */
#include "budget_alloc.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_long g_budget = -1, g_live, g_failed;

/* One allocation from the budget: 1, or 0 once it is spent (and from then
 * on: the budget never goes below 0, which would read as unlimited). */
static int take(void)
{
    long b = atomic_load(&g_budget);
    for (;;) {
        if (b < 0) return 1;
        if (b == 0) {
            atomic_fetch_add(&g_failed, 1);
            return 0;
        }
        if (atomic_compare_exchange_weak(&g_budget, &b, b - 1)) return 1;
    }
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
    atomic_store(&g_failed, 0);
}

long budget_alloc_failed(void)
{
    return atomic_load(&g_failed);
}

long budget_alloc_live(void)
{
    return atomic_load(&g_live);
}
