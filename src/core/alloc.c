/* SPDX-License-Identifier: MIT */
/* The allocation seam: mimalloc by default, replaceable through
 * pc_set_allocator (tests install counting or failing allocators). */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <stdlib.h>

#include <mimalloc.h>

#include "portcullis.h"

/* Sanitizer builds (PC_SANITIZE) route the default allocator to the C
 * library: ASan and TSan intercept malloc/free but not mimalloc, so with
 * mimalloc they would miss heap errors and see cross-thread reuse of a
 * block as a data race. */
#ifdef PC_ALLOC_SYSTEM
#define mi_malloc  malloc
#define mi_calloc  calloc
#define mi_realloc realloc
#define mi_free    free
#endif

static void *mi_malloc_hook(void *u, size_t n)
{
    (void)u;
    return mi_malloc(n);
}
static void *mi_calloc_hook(void *u, size_t n, size_t sz)
{
    (void)u;
    return mi_calloc(n, sz);
}
static void *mi_realloc_hook(void *u, void *p, size_t n)
{
    (void)u;
    return mi_realloc(p, n);
}
static void mi_free_hook(void *u, void *p)
{
    (void)u;
    mi_free(p);
}

static pc_allocator_t g_alloc = {mi_malloc_hook, mi_calloc_hook, mi_realloc_hook, mi_free_hook,
                                 NULL};
static atomic_int g_pins;

/* calloc of a set that gives none: through its own malloc (never the
 * default's, whose blocks the set's free cannot take) */
static void *user_calloc_hook(void *u, size_t n, size_t sz)
{
    if (sz && n > SIZE_MAX / sz) return NULL;
    void *p = g_alloc.malloc_fn(u, n * sz);
    if (p) memset(p, 0, n * sz);
    return p;
}

int pc_set_allocator(const pc_allocator_t *a)
{
    if (atomic_load(&g_pins) != 0) return PC_EBUSY;
    pc_allocator_t n = {mi_malloc_hook, mi_calloc_hook, mi_realloc_hook, mi_free_hook, NULL};
    if (a && (a->malloc_fn || a->calloc_fn || a->realloc_fn || a->free_fn)) {
        /* a block must go back to the allocator it came from: a set
         * replaces malloc, realloc and free together (calloc can be made
         * from its malloc), never some of them */
        if (!a->malloc_fn || !a->realloc_fn || !a->free_fn) return PC_EINVAL;
        n.malloc_fn = a->malloc_fn;
        n.calloc_fn = a->calloc_fn ? a->calloc_fn : user_calloc_hook;
        n.realloc_fn = a->realloc_fn;
        n.free_fn = a->free_fn;
        n.user = a->user;
    }
    g_alloc = n;
    return 0;
}

void pc__alloc_pin(void)
{
    atomic_fetch_add(&g_pins, 1);
}

void pc__alloc_unpin(void)
{
    atomic_fetch_sub(&g_pins, 1);
}

void *pc__malloc(size_t size)
{
    return g_alloc.malloc_fn(g_alloc.user, size ? size : 1);
}

void *pc__calloc(size_t n, size_t size)
{
    return g_alloc.calloc_fn(g_alloc.user, n ? n : 1, size ? size : 1);
}

void *pc__realloc(void *ptr, size_t size)
{
    return g_alloc.realloc_fn(g_alloc.user, ptr, size ? size : 1);
}

void pc__free(void *ptr)
{
    if (ptr) g_alloc.free_fn(g_alloc.user, ptr);
}

char *pc__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pc__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
