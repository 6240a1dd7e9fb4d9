/* SPDX-License-Identifier: MIT */
/* The verdict pipeline run by the accept thread(s) for every incoming
 * connection, in this order, each outcome counted per step:
 *
 *   1. capacity     at_capacity set by the caller -> PC_DEFER, or PC_REJECT if
 *                   the config says so. Not shadowed: capacity protects the
 *                   server itself, so it applies even in shadow mode.
 *   2. rules        longest-prefix match over the rule set in force: deny
 *                   rejects; allow, or no match, continues. With
 *                   allow_exempts an explicit allow skips steps 3 and 4.
 *   3. source_max   per-source open connections (reject when the source
 *                   already holds per_source_max; a full tracker table counts
 *                   here under the fail-closed policy).
 *   4. source_rate  per-source token bucket (per_source_rate, burst).
 *   5. condition    the caller's condition function, if any.
 *
 * A peer that is not IPv4 or IPv6 (addr_t family 0, e.g. a Unix socket)
 * skips steps 2-4: only capacity and the condition judge it.
 *
 * Shadow mode evaluates steps 2-4, counts in would_reject[] every step that
 * would have rejected (one connection may count in several), and lets the
 * connection through them. Capacity and, by default, the user condition still
 * apply: shadow mode dry-runs the filter configuration (rules and limits), not
 * the application's own callback. With shadow_condition the condition is
 * dry-run too (would_reject[PC_STEP_CONDITION], would_defer).
 *
 * A connection rejected or deferred after step 3 counted it is uncounted
 * again (and given back its rate token): only accepted connections hold a
 * tracker slot, through the ticket, until filter_release.
 *
 * Threads: filter_decide runs on accept threads (and, for the PROXY
 * protocol's second verdict, on workers), each passing its own reader index
 * (0..max_readers-1); it never locks or allocates. filter_release,
 * filter_set_rules, filter_stats and the rule accessors may be called from
 * any thread. */
#ifndef PC_FILTER_PIPELINE_H
#define PC_FILTER_PIPELINE_H

#include <stdint.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "filter/addr.h"
#include "filter/source_tracker.h"

typedef struct filter_s filter_t;

typedef struct filter_config_s {
    unsigned per_source_max;    /* open connections per source; 0 = no limit */
    double per_source_rate;     /* new connections per second per source; 0 = no limit */
    unsigned per_source_burst;  /* bucket size, >= 1 when a rate is set */
    uint8_t source_prefix_v4;   /* source key: IPv4 prefix length (default 32) */
    uint8_t source_prefix_v6;   /* source key: IPv6 prefix length (default 64) */
    unsigned source_table_size; /* tracker slots (default 65536) */
    int full_policy;            /* tracker_full_policy_t (default TRACKER_FULL_SHARED) */
    int allow_exempts;          /* an explicit allow rule skips the per-source limits (default 0) */
    int shadow;                 /* dry run of steps 2-4 (default 0) */
    int shadow_condition;       /* in shadow mode, dry-run step 5 too (default 0) */
    pc_capacity_policy_t at_capacity; /* default PC_CAPACITY_DEFER */
    int max_readers;                  /* threads calling filter_decide (default 1) */
} filter_config_t;

/* What an accepted connection holds; give it back with filter_release. */
typedef struct filter_ticket_s {
    uint32_t slot; /* tracker slot, TRACK_NO_SLOT if none */
} filter_ticket_t;

typedef struct filter_stats_s {
    uint64_t accepted;                    /* filter_decide returned PC_ACCEPT */
    uint64_t rejected[PC_STEP_COUNT];     /* PC_REJECT, by deciding step */
    uint64_t deferred[PC_STEP_COUNT];     /* PC_DEFER, by step (capacity, condition) */
    uint64_t would_reject[PC_STEP_COUNT]; /* shadow mode: steps that would have rejected */
    uint64_t would_defer;                 /* shadow_condition: the condition asked to defer */
    uint64_t exempted;                    /* accepted, per-source limits skipped by an allow rule */
    uint64_t tracker_full;                /* new sources that found no tracker slot */
    uint64_t tracker_used;                /* tracker slots holding a source */
    uint64_t tracker_active;              /* sources with open connections */
    uint64_t tracker_capacity;            /* 0 when no per-source limit is configured */
    uint64_t rules;                       /* rules in force */
    uint64_t rule_duplicates;             /* lines folded into them (pc_rules_duplicates) */
    uint64_t rule_swaps;                  /* filter_set_rules calls that took effect */
    int shadow;
    int full_policy;
} filter_stats_t;

/* Defaults as documented on each field. */
void filter_config_init(filter_config_t *cfg);

/* Create a filter (no rules in force). Returns 0, PC_EINVAL (bad config),
 * PC_ENOMEM. Any thread. */
int filter_create(const filter_config_t *cfg, filter_t **out);

/* Free the filter and the rules in force. No decide may be running and every
 * ticket should have been released. */
void filter_destroy(filter_t *f);

/* Put r in force (ownership taken; NULL = no rules), atomically between two
 * decisions, keeping hit counters of rules that survive; returns when the old
 * set is freed. Any thread other than a filter_decide caller in the middle of
 * a decision. Returns 0, or PC_EINVAL when r is already in force (ownership
 * then not taken). */
int filter_set_rules(filter_t *f, pc_rules_t *r);

/* Decide for one connection from peer (IPv4-mapped IPv6 is treated as IPv4)
 * at now_ns (a monotonic clock in nanoseconds). at_capacity: the server is
 * at max_connections. cond (may be NULL) is the user condition, called as
 * cond(cond_ud) only for connections that passed steps 1-4 (in shadow mode
 * steps 2-4 let everything through); any value other than PC_ACCEPT or
 * PC_DEFER counts as PC_REJECT. ticket must not be NULL: on PC_ACCEPT *ticket
 * must later go to filter_release exactly once (a ticket of a rejected or
 * deferred connection holds nothing, releasing it is harmless). *step_out (may be
 * NULL) receives the deciding pc_step_t for PC_REJECT / PC_DEFER; for
 * PC_ACCEPT it is PC_STEP_COUNT, or in shadow mode the first step that would
 * have rejected. Accept threads, reader = the caller's index; no lock, no
 * allocation. */
pc_verdict_t filter_decide(filter_t *f, int reader, const addr_t *peer, uint64_t now_ns,
                           int at_capacity, pc_verdict_t (*cond)(void *ud), void *cond_ud,
                           filter_ticket_t *ticket, int *step_out);

/* filter_decide_ex flags */
#define FILTER_SKIP_SOURCE                                           \
    1u /* skip steps 3-4: a trusted proxy's own address is shared by \
        * all its clients (the real client is judged later) */
#define FILTER_RETRY                                                    \
    2u /* the condition deferred this connection and it is asked again: \
        * its rule hit and its would_reject and deferred counts were    \
        * taken at the first ask (rejects are counted as ever, with     \
        * the hit of a rule that rejects it after a reload) */

/* filter_decide with flags (FILTER_SKIP_SOURCE, FILTER_RETRY). The PROXY
 * protocol's second verdict on the real client also runs through here, on
 * worker threads, with at_capacity 0 (the connection already holds its
 * capacity slot) and a reader index of its own (readers beyond the accept
 * threads'). */
pc_verdict_t filter_decide_ex(filter_t *f, int reader, const addr_t *peer, uint64_t now_ns,
                              int at_capacity, unsigned flags, pc_verdict_t (*cond)(void *ud),
                              void *cond_ud, filter_ticket_t *ticket, int *step_out);

/* The connection of an accepted ticket closed (any path). Any thread. */
void filter_release(filter_t *f, const filter_ticket_t *t);

/* Snapshot of the counters (summed over readers; each read atomically, not
 * one instant; scans the tracker table). Any thread. */
void filter_stats(const filter_t *f, filter_stats_t *out);

/* The set in force, for a caller that serialises every filter_set_rules
 * itself (the server, under its kernel-filter lock): valid until its next
 * filter_set_rules. */
pc_rules_t *filter_rules_peek(filter_t *f);

/* Rules in force and one rule's info and hit counter. Any thread. */
size_t filter_rules_count(filter_t *f);
int filter_rules_get(filter_t *f, size_t i, pc_rule_info_t *out);

/* Up to max rules of the set in force with the most hits (rules without hits
 * left out), most first, in one pass under one lock; meant for a small max.
 * Returns how many were written. Any thread. */
size_t filter_rules_top(filter_t *f, pc_rule_info_t *out, size_t max);

/* The tracker (NULL when no per-source limit is configured); for tests. */
tracker_t *filter_tracker(filter_t *f);

#endif
