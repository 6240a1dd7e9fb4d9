/* SPDX-License-Identifier: MIT */
#include "budget_alloc.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long g_budget = -1, g_live, g_failed;
static atomic_llong g_live_bytes;

/* Each block starts with its size, so a free knows what it gives back. */
typedef union {
    size_t n;
    max_align_t align;
} head_t;

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

/* A block of n bytes from h (NULL: none): counted, its size recorded. */
static void *block(head_t *h, size_t n)
{
    if (!h) return NULL;
    h->n = n;
    atomic_fetch_add(&g_live, 1);
    atomic_fetch_add(&g_live_bytes, (long long)n);
    return h + 1;
}

static void *b_malloc(void *u, size_t n)
{
    (void)u;
    if (!take() || n > SIZE_MAX - sizeof(head_t)) return NULL;
    return block(malloc(sizeof(head_t) + n), n);
}

static void *b_calloc(void *u, size_t n, size_t s)
{
    (void)u;
    if (!take() || (s && n > (SIZE_MAX - sizeof(head_t)) / s)) return NULL;
    return block(calloc(1, sizeof(head_t) + n * s), n * s);
}

static void *b_realloc(void *u, void *p, size_t n)
{
    (void)u;
    if (!take() || n > SIZE_MAX - sizeof(head_t)) return NULL;
    if (!p) return block(malloc(sizeof(head_t) + n), n);
    head_t *h = (head_t *)p - 1;
    size_t old = h->n;
    head_t *q = realloc(h, sizeof(head_t) + n);
    if (!q) return NULL; /* p stays valid and counted */
    q->n = n;
    atomic_fetch_add(&g_live_bytes, (long long)n - (long long)old);
    return q + 1;
}

static void b_free(void *u, void *p)
{
    (void)u;
    if (!p) return;
    head_t *h = (head_t *)p - 1;
    atomic_fetch_sub(&g_live, 1);
    atomic_fetch_sub(&g_live_bytes, (long long)h->n);
    free(h);
}

const pc_allocator_t budget_allocator = {b_malloc, b_calloc, b_realloc, b_free, NULL};

void budget_alloc_reset(long budget)
{
    atomic_store(&g_budget, budget < 0 ? -1 : budget);
    atomic_store(&g_live, 0);
    atomic_store(&g_live_bytes, 0);
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

long long budget_alloc_live_bytes(void)
{
    return atomic_load(&g_live_bytes);
}
