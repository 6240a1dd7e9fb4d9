/* SPDX-License-Identifier: MIT */
/* Hot swap of the rule set in force (see rules_holder.h). */
#include "filter/rules_holder.h"

#include <string.h>

#include "portcullis.h"
#include "core/alloc.h"

int rules_holder_init(rules_holder_t *h, int nreaders)
{
    memset(h, 0, sizeof *h);
    if (nreaders < 1) nreaders = 1;
    h->readers_mem = pc__calloc((size_t)nreaders + 1, sizeof(rules_reader_t));
    if (!h->readers_mem) return PC_ENOMEM;
    uintptr_t p = ((uintptr_t)h->readers_mem + 63) & ~(uintptr_t)63;
    h->readers = (rules_reader_t *)(void *)p;
    h->nreaders = nreaders;
    for (int i = 0; i < nreaders; i++)
        atomic_init(&h->readers[i].hp, NULL);
    atomic_init(&h->current, NULL);
    pc__mutex_init(&h->lock);
    return 0;
}

void rules_holder_destroy(rules_holder_t *h)
{
    if (!h->readers_mem) return;
    pc_rules_free(atomic_load(&h->current));
    atomic_store(&h->current, NULL);
    pc__mutex_destroy(&h->lock);
    pc__free(h->readers_mem);
    h->readers_mem = NULL;
    h->readers = NULL;
}

static void wait_unused(rules_holder_t *h, pc_rules_t *old)
{
    for (int i = 0; i < h->nreaders; i++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&h->readers[i].hp, memory_order_seq_cst) == old) {
            if (++spins > 200) pc__sleep_ms(1);
        }
    }
}

int rules_holder_swap(rules_holder_t *h, pc_rules_t *r)
{
    pc__mutex_lock(&h->lock);
    pc_rules_t *old = atomic_load_explicit(&h->current, memory_order_relaxed);
    if (r && r == old) {
        pc__mutex_unlock(&h->lock);
        return PC_EINVAL;
    }
    atomic_exchange_explicit(&h->current, r, memory_order_seq_cst);
    if (old) {
        wait_unused(h, old);
        rules_carry_hits(old, r);
        pc_rules_free(old);
    }
    atomic_fetch_add_explicit(&h->swaps, 1, memory_order_relaxed);
    pc__mutex_unlock(&h->lock);
    return 0;
}

size_t rules_holder_count(rules_holder_t *h)
{
    pc__mutex_lock(&h->lock);
    size_t n = pc_rules_count(atomic_load_explicit(&h->current, memory_order_relaxed));
    pc__mutex_unlock(&h->lock);
    return n;
}

size_t rules_holder_duplicates(rules_holder_t *h)
{
    pc__mutex_lock(&h->lock);
    pc_rules_t *r = atomic_load_explicit(&h->current, memory_order_relaxed);
    size_t n = pc_rules_duplicates(r, NULL, NULL, NULL, 0);
    pc__mutex_unlock(&h->lock);
    return n;
}

int rules_holder_get(rules_holder_t *h, size_t i, pc_rule_info_t *out)
{
    pc__mutex_lock(&h->lock);
    int rc = pc_rules_get(atomic_load_explicit(&h->current, memory_order_relaxed), i, out);
    pc__mutex_unlock(&h->lock);
    return rc;
}

size_t rules_holder_top(rules_holder_t *h, pc_rule_info_t *out, size_t max)
{
    pc__mutex_lock(&h->lock);
    size_t n = rules_top(atomic_load_explicit(&h->current, memory_order_relaxed), out, max);
    pc__mutex_unlock(&h->lock);
    return n;
}
