/* SPDX-License-Identifier: MIT */
/* Compiled rule sets: internals shared by rules.c, the swap holder and the
 * pipeline. The public face is include/portcullis/filter.h. */
#ifndef PC_FILTER_RULES_H
#define PC_FILTER_RULES_H

#include <stdatomic.h>
#include <stdint.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "filter/addr.h"
#include "filter/prefix_table.h"

/* Most rules in one set: rule indices fit in 26 bits of the sort keys. */
#define RULES_MAX ((size_t)1 << 26)
/* Most sources (files, strings) in one set: a rule records its source in a byte. */
#define RULES_MAX_SOURCES 255
/* rules_lookup result when no rule matches. */
#define RULE_NONE UINT32_MAX

typedef struct rule_s {
    uint32_t line;
    uint32_t a4;    /* IPv4 address (host order), or index into v6[] */
    uint8_t family; /* 4 or 6 */
    uint8_t len;
    uint8_t action; /* pc_rule_action_t */
    uint8_t src;    /* index of the source it came from (builder order) */
} rule_t;

struct pc_rules_s {
    size_t n;               /* rules */
    size_t n4, n6;          /* of which IPv4 / IPv6 */
    rule_t *rule;           /* in line order */
    uint8_t (*v6)[16];      /* IPv6 addresses */
    _Atomic uint64_t *hits; /* per rule */
    uint32_t *order;        /* rule indices: IPv4 by (address, length), then IPv6 */
    lpm_t t4, t6;           /* values are rule index + 1 */
    /* Lines folded into an earlier one with the same action and prefix, and
     * the first such line (the earliest loaded) with the line it repeats. */
    size_t ndup;
    unsigned dup_line, dup_first_line;
    char dup_msg[256]; /* "SRC:LINE: duplicate ... (already at ...)" or "" */
};

/* Index of the rule deciding for a (longest prefix), or RULE_NONE. a must be
 * normalised (IPv4-mapped IPv6 as IPv4). Lock-free, any thread. */
static inline uint32_t rules_lookup(const pc_rules_t *r, const addr_t *a)
{
    uint32_t v;
    if (a->family == 4)
        v = lpm_lookup4(&r->t4, addr_v4_u32(a));
    else
        v = lpm_lookup6(&r->t6, addr_load_be64(a->b), addr_load_be64(a->b + 8));
    return v - 1; /* LPM_NONE - 1 == RULE_NONE */
}

static inline pc_rule_action_t rules_action(const pc_rules_t *r, uint32_t i)
{
    return (pc_rule_action_t)r->rule[i].action;
}

/* Count one hit on rule i (relaxed atomic add; any thread). */
static inline void rules_hit(pc_rules_t *r, uint32_t i)
{
    atomic_fetch_add_explicit(&r->hits[i], 1, memory_order_relaxed);
}

/* Add the hit counters of every rule of `from` to the rule of `to` with the
 * same action and prefix. `from` must no longer be counted into (quiescent);
 * `to` may be. O(n + m), no allocation. */
void rules_carry_hits(const pc_rules_t *from, pc_rules_t *to);

/* Up to max rules with the most hits (hits > 0), most first: one pass over
 * the counters, text formatted only for the winners. O(n * max). NULL r: 0. */
size_t rules_top(const pc_rules_t *r, pc_rule_info_t *out, size_t max);

/* Bytes of the two prefix tables / of the whole set. */
size_t rules_table_bytes(const pc_rules_t *r);
size_t rules_total_bytes(const pc_rules_t *r);

#endif
