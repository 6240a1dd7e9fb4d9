/* SPDX-License-Identifier: MIT */
/* The rule set in force, swapped whole while accept threads read it.
 *
 * Readers (accept threads, each with its own index) take no lock and never
 * allocate: a reader publishes the set it is about to use in its own slot (a
 * hazard pointer), checks it is still the current one, uses it, and clears
 * the slot. A swap (any thread; swaps are serialised by a writer-only mutex)
 * installs the new set with one atomic exchange — readers that start after
 * it see the new set, so the switch happens between two accepts — then waits
 * until no reader slot holds the old set, adds the old set's hit counters to
 * the rules of the new set that survive (same action and prefix; hits taken
 * on the old set up to that moment included, so the carry is exact) and
 * frees the old set. A reader holds its slot only for one lookup, so the
 * wait is short; it never depends on the reader blocking or accepting. */
#ifndef PC_FILTER_RULES_HOLDER_H
#define PC_FILTER_RULES_HOLDER_H

#include <stdatomic.h>

#include "core/thread.h"
#include "filter/rules.h"

typedef struct rules_reader_s {
    _Atomic(pc_rules_t *) hp;
    char pad[64 - sizeof(void *)];
} rules_reader_t;

typedef struct rules_holder_s {
    _Atomic(pc_rules_t *) current;
    int nreaders;
    rules_reader_t *readers; /* cache-line aligned inside readers_mem */
    void *readers_mem;
    pc_mutex_t lock; /* writers and counter readers only */
    _Atomic uint64_t swaps;
} rules_holder_t;

/* Set up for nreaders (>= 1) reader indices. Returns 0 or PC_ENOMEM. */
int rules_holder_init(rules_holder_t *h, int nreaders);

/* Free the set in force. No reader may be active. */
void rules_holder_destroy(rules_holder_t *h);

/* Reader `reader` starts using the current set (NULL: none, and nothing to
 * leave). Pair a non-NULL result with rules_holder_leave before blocking. */
static inline pc_rules_t *rules_holder_enter(rules_holder_t *h, int reader)
{
    _Atomic(pc_rules_t *) *hp = &h->readers[reader].hp;
    pc_rules_t *r = atomic_load_explicit(&h->current, memory_order_acquire);
    while (r) {
        atomic_store_explicit(hp, r, memory_order_seq_cst);
        pc_rules_t *again = atomic_load_explicit(&h->current, memory_order_seq_cst);
        if (again == r) break;
        r = again;
    }
    /* The loop may have published a set that a swap to NULL then replaced:
     * the caller does not leave when it gets NULL, so clear the slot here or
     * that swap would wait for it forever. */
    if (!r) atomic_store_explicit(hp, NULL, memory_order_release);
    return r;
}

static inline void rules_holder_leave(rules_holder_t *h, int reader)
{
    atomic_store_explicit(&h->readers[reader].hp, NULL, memory_order_release);
}

/* Install r (ownership taken; NULL = no rules) and free the previous set once
 * no reader uses it, carrying hit counters over. Any thread except a reader
 * between enter and leave. Returns 0, or PC_EINVAL if r is already in force
 * (nothing changes, ownership not taken). */
int rules_holder_swap(rules_holder_t *h, pc_rules_t *r);

/* Rules in force / one rule's info and counter (under the writer mutex, so
 * the set cannot be freed meanwhile). Any thread. */
size_t rules_holder_count(rules_holder_t *h);
size_t rules_holder_duplicates(rules_holder_t *h);
int rules_holder_get(rules_holder_t *h, size_t i, pc_rule_info_t *out);
/* rules_top on the set in force, under the writer mutex. */
size_t rules_holder_top(rules_holder_t *h, pc_rule_info_t *out, size_t max);

#endif
