/* SPDX-License-Identifier: MIT */
/* The verdict pipeline (see pipeline.h). */
#include "filter/pipeline.h"

#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "filter/rules_holder.h"

/* Counters of one reader: written by that accept thread only (a relaxed load
 * and store, no locked instruction), read by filter_stats. */
typedef struct filter_counters_s {
    _Atomic uint64_t accepted, exempted, would_defer;
    _Atomic uint64_t rejected[PC_STEP_COUNT];
    _Atomic uint64_t deferred[PC_STEP_COUNT];
    _Atomic uint64_t would_reject[PC_STEP_COUNT];
} filter_counters_t;

/* Padded to whole cache lines so readers do not share one. */
#define COUNTERS_STRIDE ((sizeof(filter_counters_t) + 63) & ~(size_t)63)

struct filter_s {
    filter_config_t cfg;
    rules_holder_t rules;
    tracker_t *tracker;
    unsigned char *counters; /* max_readers * COUNTERS_STRIDE, 64-aligned */
    void *counters_mem;
    int pinned;
};

void filter_config_init(filter_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->source_prefix_v4 = 32;
    cfg->source_prefix_v6 = 64;
    cfg->source_table_size = 65536;
    cfg->full_policy = TRACKER_FULL_SHARED;
    cfg->at_capacity = PC_CAPACITY_DEFER;
    cfg->max_readers = 1;
}

int filter_create(const filter_config_t *cfg, filter_t **out)
{
    *out = NULL;
    if (cfg->max_readers < 1 || cfg->max_readers > 4096) return PC_EINVAL;
    if (cfg->at_capacity != PC_CAPACITY_DEFER && cfg->at_capacity != PC_CAPACITY_REJECT)
        return PC_EINVAL;
    if (!(cfg->per_source_rate >= 0)) return PC_EINVAL; /* negative or NaN */
    filter_t *f = pc__calloc(1, sizeof *f);
    if (!f) return PC_ENOMEM;
    f->cfg = *cfg;
    int rc = rules_holder_init(&f->rules, cfg->max_readers);
    if (rc != 0) {
        pc__free(f);
        return rc;
    }
    f->counters_mem = pc__calloc((size_t)cfg->max_readers + 1, COUNTERS_STRIDE);
    if (!f->counters_mem) {
        filter_destroy(f);
        return PC_ENOMEM;
    }
    f->counters = (unsigned char *)(((uintptr_t)f->counters_mem + 63) & ~(uintptr_t)63);
    if (cfg->per_source_max > 0 || cfg->per_source_rate > 0) {
        tracker_config_t tc;
        tracker_config_init(&tc);
        tc.max = cfg->per_source_max;
        tc.rate = cfg->per_source_rate;
        tc.burst = cfg->per_source_burst;
        tc.prefix_v4 = cfg->source_prefix_v4;
        tc.prefix_v6 = cfg->source_prefix_v6;
        tc.capacity = cfg->source_table_size;
        tc.full_policy = cfg->full_policy;
        rc = tracker_create(&tc, &f->tracker);
        if (rc != 0) {
            filter_destroy(f);
            return rc;
        }
    }
    pc__alloc_pin();
    f->pinned = 1;
    *out = f;
    return 0;
}

void filter_destroy(filter_t *f)
{
    if (!f) return;
    int pinned = f->pinned;
    rules_holder_destroy(&f->rules);
    tracker_destroy(f->tracker);
    pc__free(f->counters_mem);
    pc__free(f);
    if (pinned) pc__alloc_unpin();
}

int filter_set_rules(filter_t *f, pc_rules_t *r)
{
    return rules_holder_swap(&f->rules, r);
}

static inline filter_counters_t *counters(const filter_t *f, int reader)
{
    return (filter_counters_t *)(void *)(f->counters + (size_t)reader * COUNTERS_STRIDE);
}

static inline void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

pc_verdict_t filter_decide(filter_t *f, int reader, const addr_t *peer_in, uint64_t now_ns,
                           int at_capacity, pc_verdict_t (*cond)(void *ud), void *cond_ud,
                           filter_ticket_t *ticket, int *step_out)
{
    return filter_decide_ex(f, reader, peer_in, now_ns, at_capacity, 0, cond, cond_ud, ticket,
                            step_out);
}

pc_verdict_t filter_decide_ex(filter_t *f, int reader, const addr_t *peer_in, uint64_t now_ns,
                              int at_capacity, unsigned flags, pc_verdict_t (*cond)(void *ud),
                              void *cond_ud, filter_ticket_t *ticket, int *step_out)
{
    int step_dummy;
    if (!step_out) step_out = &step_dummy;
    ticket->slot = TRACK_NO_SLOT;
    *step_out = PC_STEP_COUNT;
    if ((unsigned)reader >= (unsigned)f->cfg.max_readers) {
        PC_LOGE("filter: reader index %d out of range (max_readers %d)", reader,
                f->cfg.max_readers);
        return PC_REJECT;
    }
    filter_counters_t *c = counters(f, reader);

    /* 1. capacity (never shadowed) */
    if (at_capacity) {
        *step_out = PC_STEP_CAPACITY;
        if (f->cfg.at_capacity == PC_CAPACITY_REJECT) {
            bump(&c->rejected[PC_STEP_CAPACITY]);
            return PC_REJECT;
        }
        bump(&c->deferred[PC_STEP_CAPACITY]);
        return PC_DEFER;
    }

    const int shadow = f->cfg.shadow;
    const int retry = (flags & FILTER_RETRY) != 0;
    int first_fail = PC_STEP_COUNT;
    addr_t peer = *peer_in;
    int ip = peer.family == 4 || peer.family == 6;
    if (peer.family == 6) addr_normalize(&peer);

    /* 2. rules */
    int deny = 0, exempt = 0;
    pc_rules_t *r = ip ? rules_holder_enter(&f->rules, reader) : NULL;
    if (r) {
        uint32_t i = rules_lookup(r, &peer);
        if (i != RULE_NONE) {
            if (rules_action(r, i) == PC_RULE_DENY)
                deny = 1;
            else
                exempt = f->cfg.allow_exempts;
            /* a retry counted its hit at the first ask, unless this rule now
             * rejects it (a reload between the asks: it decided) */
            if (!retry || (deny && !shadow)) rules_hit(r, i);
        }
        rules_holder_leave(&f->rules, reader);
    }
    if (deny) {
        if (!shadow) {
            *step_out = PC_STEP_RULES;
            bump(&c->rejected[PC_STEP_RULES]);
            return PC_REJECT;
        }
        if (!retry) bump(&c->would_reject[PC_STEP_RULES]);
        first_fail = PC_STEP_RULES;
    }

    /* 3, 4. per-source concurrent connections and rate */
    uint32_t slot = TRACK_NO_SLOT;
    int token_taken = 0;
    if (f->tracker && ip && !exempt && !(flags & FILTER_SKIP_SOURCE)) {
        unsigned res = tracker_acquire(f->tracker, &peer, now_ns, shadow, &slot);
        token_taken = !(res & TRACK_OVER_RATE);
        if (res) {
            int step =
                (res & (TRACK_OVER_MAX | TRACK_FULL)) ? PC_STEP_SOURCE_MAX : PC_STEP_SOURCE_RATE;
            if (!shadow) {
                *step_out = step;
                bump(&c->rejected[step]);
                return PC_REJECT;
            }
            if (!retry && (res & (TRACK_OVER_MAX | TRACK_FULL)))
                bump(&c->would_reject[PC_STEP_SOURCE_MAX]);
            if (!retry && (res & TRACK_OVER_RATE)) bump(&c->would_reject[PC_STEP_SOURCE_RATE]);
            if (first_fail == PC_STEP_COUNT) first_fail = step;
        }
    }

    /* 5. user condition */
    if (cond) {
        pc_verdict_t v = cond(cond_ud);
        if (v != PC_ACCEPT) {
            if (v != PC_DEFER) v = PC_REJECT;
            if (!shadow || !f->cfg.shadow_condition) {
                if (slot != TRACK_NO_SLOT) {
                    if (token_taken)
                        tracker_undo(f->tracker, slot);
                    else
                        tracker_release(f->tracker, slot);
                }
                *step_out = PC_STEP_CONDITION;
                if (v == PC_REJECT)
                    bump(&c->rejected[PC_STEP_CONDITION]);
                else if (!retry)
                    bump(&c->deferred[PC_STEP_CONDITION]);
                return v;
            }
            if (v == PC_REJECT) {
                bump(&c->would_reject[PC_STEP_CONDITION]);
                if (first_fail == PC_STEP_COUNT) first_fail = PC_STEP_CONDITION;
            } else {
                bump(&c->would_defer);
            }
        }
    }

    bump(&c->accepted);
    if (exempt && f->tracker) bump(&c->exempted);
    ticket->slot = slot;
    *step_out = first_fail;
    return PC_ACCEPT;
}

void filter_release(filter_t *f, const filter_ticket_t *t)
{
    if (t->slot != TRACK_NO_SLOT && f->tracker) tracker_release(f->tracker, t->slot);
}

static uint64_t ld(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void filter_stats(const filter_t *f, filter_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (int r = 0; r < f->cfg.max_readers; r++) {
        const filter_counters_t *c = counters(f, r);
        out->accepted += ld(&c->accepted);
        out->exempted += ld(&c->exempted);
        out->would_defer += ld(&c->would_defer);
        for (int s = 0; s < PC_STEP_COUNT; s++) {
            out->rejected[s] += ld(&c->rejected[s]);
            out->deferred[s] += ld(&c->deferred[s]);
            out->would_reject[s] += ld(&c->would_reject[s]);
        }
    }
    if (f->tracker) {
        tracker_stats_t ts;
        tracker_stats(f->tracker, &ts);
        out->tracker_full = ts.full_events;
        out->tracker_used = ts.used;
        out->tracker_active = ts.active;
        out->tracker_capacity = ts.capacity;
    }
    out->rules = rules_holder_count((rules_holder_t *)&f->rules);
    out->rule_duplicates = rules_holder_duplicates((rules_holder_t *)&f->rules);
    out->rule_swaps = atomic_load_explicit(&f->rules.swaps, memory_order_relaxed);
    out->shadow = f->cfg.shadow;
    out->full_policy = f->cfg.full_policy;
}

pc_rules_t *filter_rules_peek(filter_t *f)
{
    return atomic_load(&f->rules.current);
}

size_t filter_rules_count(filter_t *f)
{
    return rules_holder_count(&f->rules);
}

int filter_rules_get(filter_t *f, size_t i, pc_rule_info_t *out)
{
    return rules_holder_get(&f->rules, i, out);
}

size_t filter_rules_top(filter_t *f, pc_rule_info_t *out, size_t max)
{
    return rules_holder_top(&f->rules, out, max);
}

tracker_t *filter_tracker(filter_t *f)
{
    return f->tracker;
}
