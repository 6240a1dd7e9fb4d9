/* SPDX-License-Identifier: MIT */
/* Stats counters: single-writer relaxed atomics, summed by readers. Each
 * worker owns a block (no shared cache line on the hot path); the accept
 * threads share one block with atomic adds. */
#ifndef PC_CORE_STATS_H
#define PC_CORE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t counter_t;

/* Add v (single writer or concurrent writers alike: fetch_add relaxed). */
static inline void counter_add(counter_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}
static inline void counter_sub(counter_t *c, uint64_t v)
{
    atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}
static inline uint64_t counter_get(const counter_t *c)
{
    return atomic_load_explicit((counter_t *)c, memory_order_relaxed);
}
/* Add v unless the sum would pass limit, in one step against concurrent
 * writers: 1 if added, 0 (nothing added) if not. */
static inline int counter_add_within(counter_t *c, uint64_t v, uint64_t limit)
{
    uint64_t cur = counter_get(c);
    do {
        if (cur > limit || v > limit - cur) return 0;
    } while (!atomic_compare_exchange_weak_explicit(c, &cur, cur + v, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 1;
}

#endif
