/* SPDX-License-Identifier: MIT */
/* The verdict pipeline: step order, counting, shadow mode, hot swap of rule
 * sets with their hit counters, IPv4-mapped peers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "portcullis.h"
#include "core/clock.h"
#include "core/thread.h"
#include "filter/addr.h"
#include "filter/pipeline.h"

static addr_t A(const char *text)
{
    addr_t a;
    if (addr_parse(text, strlen(text), &a, NULL) != 0) fail_msg("bad address %s", text);
    return a; /* not normalised: the pipeline must handle mapped peers */
}

static pc_rules_t *R(const char *text)
{
    pc_rules_t *r = NULL;
    char err[200];
    if (pc_rules_load_string(text, strlen(text), "t", &r, err, sizeof err) != 0)
        fail_msg("rules: %s", err);
    return r;
}

static filter_t *make(const filter_config_t *cfg, const char *rules)
{
    filter_t *f = NULL;
    assert_int_equal(filter_create(cfg, &f), 0);
    if (rules) assert_int_equal(filter_set_rules(f, R(rules)), 0);
    return f;
}

typedef struct cond_s {
    pc_verdict_t verdict;
    int calls;
} cond_t;

static pc_verdict_t cond_fn(void *ud)
{
    cond_t *c = ud;
    c->calls++;
    return c->verdict;
}

/* One decision; returns the verdict, fills step and ticket. */
static pc_verdict_t decide(filter_t *f, const char *addr, uint64_t now_ms, int at_cap, cond_t *c,
                           filter_ticket_t *t, int *step)
{
    addr_t a = A(addr);
    filter_ticket_t dummy;
    return filter_decide(f, 0, &a, now_ms * 1000000ull, at_cap, c ? cond_fn : NULL, c,
                         t ? t : &dummy, step);
}

static uint64_t rule_hits(filter_t *f, size_t i)
{
    pc_rule_info_t info;
    assert_int_equal(filter_rules_get(f, i, &info), 0);
    return info.hits;
}

/* FILTER_RETRY: a connection the condition deferred, asked again. Its rule
 * hit and deferral were counted at the first ask; a rule that rejects it
 * on a retry (a reload between the asks) counts its hit, as it decided. */
static void test_retry_counts_once(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    filter_t *f = make(&cfg, "allow 192.0.2.0/24\n");
    cond_t c = {PC_DEFER, 0};
    addr_t a = A("192.0.2.7");
    filter_ticket_t t;
    int step = -1;
    assert_int_equal(filter_decide_ex(f, 0, &a, 0, 0, 0, cond_fn, &c, &t, &step), PC_DEFER);
    assert_int_equal(step, PC_STEP_CONDITION);
    for (int i = 0; i < 5; i++)
        assert_int_equal(filter_decide_ex(f, 0, &a, 0, 0, FILTER_RETRY, cond_fn, &c, &t, &step),
                         PC_DEFER);
    assert_int_equal(c.calls, 6);
    assert_int_equal(rule_hits(f, 0), 1);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.deferred[PC_STEP_CONDITION], 1);
    /* a reload makes it denied: the retry is rejected, the deny counts it */
    assert_int_equal(filter_set_rules(f, R("deny 192.0.2.0/24\n")), 0);
    assert_int_equal(filter_decide_ex(f, 0, &a, 0, 0, FILTER_RETRY, cond_fn, &c, &t, &step),
                     PC_REJECT);
    assert_int_equal(step, PC_STEP_RULES);
    assert_int_equal(rule_hits(f, 0), 1);
    filter_destroy(f);

    /* shadow mode: a source over its limit is counted as would-reject at
     * the first ask only, however often the deferred connection is retried */
    filter_config_init(&cfg);
    cfg.shadow = 1;
    cfg.per_source_max = 1;
    f = make(&cfg, NULL);
    filter_ticket_t held;
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, NULL, &held, &step), PC_ACCEPT);
    a = A("192.0.2.9");
    c.calls = 0;
    assert_int_equal(filter_decide_ex(f, 0, &a, 0, 0, 0, cond_fn, &c, &t, &step), PC_DEFER);
    for (int i = 0; i < 3; i++)
        assert_int_equal(filter_decide_ex(f, 0, &a, 0, 0, FILTER_RETRY, cond_fn, &c, &t, &step),
                         PC_DEFER);
    assert_int_equal(c.calls, 4);
    filter_stats(f, &st);
    assert_int_equal(st.would_reject[PC_STEP_SOURCE_MAX], 1);
    assert_int_equal(st.deferred[PC_STEP_CONDITION], 1);
    filter_release(f, &held);
    filter_destroy(f);
}

static void test_capacity_first(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    filter_t *f = make(&cfg, "deny 192.0.2.0/24\n");
    cond_t c = {PC_REJECT, 0};
    int step = -1;
    /* capacity decides before the rules, the tracker or the condition */
    assert_int_equal(decide(f, "192.0.2.1", 0, 1, &c, NULL, &step), PC_DEFER);
    assert_int_equal(step, PC_STEP_CAPACITY);
    assert_int_equal(c.calls, 0);
    assert_int_equal(rule_hits(f, 0), 0);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.deferred[PC_STEP_CAPACITY], 1);
    assert_int_equal(st.tracker_active, 0);
    filter_destroy(f);

    cfg.at_capacity = PC_CAPACITY_REJECT;
    cfg.shadow = 1; /* capacity is not shadowed */
    f = make(&cfg, NULL);
    assert_int_equal(decide(f, "198.51.100.1", 0, 1, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_CAPACITY);
    filter_stats(f, &st);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 1);
    assert_int_equal(st.would_reject[PC_STEP_CAPACITY], 0);
    assert_int_equal(st.accepted, 0);
    filter_destroy(f);
}

static void test_rules_step(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    filter_t *f = make(&cfg, "deny 10.0.0.0/8\nallow 10.1.0.0/16\ndeny 2001:db8::/32\n");
    cond_t c = {PC_ACCEPT, 0};
    int step;
    filter_ticket_t t1, t2;
    assert_int_equal(decide(f, "10.9.9.9", 0, 0, &c, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_RULES);
    assert_int_equal(decide(f, "2001:db8::5", 0, 0, &c, NULL, &step), PC_REJECT);
    assert_int_equal(c.calls, 0);
    /* no rule matches: allowed, limits apply */
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t1, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_COUNT);
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    /* explicit allow without allow_exempts: limits apply */
    assert_int_equal(decide(f, "10.1.2.3", 0, 0, &c, &t2, &step), PC_ACCEPT);
    assert_int_equal(decide(f, "10.1.2.3", 0, 0, &c, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    assert_int_equal(rule_hits(f, 0), 1);
    assert_int_equal(rule_hits(f, 1), 2);
    assert_int_equal(rule_hits(f, 2), 1);
    filter_release(f, &t1);
    filter_release(f, &t2);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.rejected[PC_STEP_RULES], 2);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_MAX], 2);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.exempted, 0);
    assert_int_equal(st.tracker_active, 0);
    assert_int_equal(st.rules, 3);
    filter_destroy(f);

    /* with allow_exempts the explicit allow skips the per-source limits */
    cfg.allow_exempts = 1;
    f = make(&cfg, "allow 10.1.0.0/16\n");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(decide(f, "10.1.2.3", 0, 0, NULL, &t1, &step), PC_ACCEPT);
        assert_int_equal(t1.slot, TRACK_NO_SLOT);
        filter_release(f, &t1); /* harmless: holds nothing */
    }
    assert_int_equal(decide(f, "10.2.2.3", 0, 0, NULL, &t1, &step), PC_ACCEPT);
    assert_int_equal(decide(f, "10.2.2.3", 0, 0, NULL, NULL, &step), PC_REJECT);
    filter_release(f, &t1);
    filter_stats(f, &st);
    assert_int_equal(st.exempted, 5);
    filter_destroy(f);

    /* no per-source limits: an allow skips nothing, so nothing is exempted */
    cfg.per_source_max = 0;
    f = make(&cfg, "allow 10.1.0.0/16\n");
    assert_int_equal(decide(f, "10.1.2.3", 0, 0, NULL, &t1, &step), PC_ACCEPT);
    filter_release(f, &t1);
    filter_stats(f, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.exempted, 0);
    filter_destroy(f);
}

static void test_source_steps(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 2;
    filter_t *f = make(&cfg, NULL);
    filter_ticket_t t[3];
    int step;
    assert_int_equal(decide(f, "192.0.2.7", 0, 0, NULL, &t[0], &step), PC_ACCEPT);
    assert_int_equal(decide(f, "192.0.2.7", 0, 0, NULL, &t[1], &step), PC_ACCEPT);
    assert_int_equal(decide(f, "192.0.2.7", 0, 0, NULL, &t[2], &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    assert_int_equal(t[2].slot, TRACK_NO_SLOT);
    filter_release(f, &t[0]);
    assert_int_equal(decide(f, "192.0.2.7", 0, 0, NULL, &t[0], &step), PC_ACCEPT);
    filter_release(f, &t[0]);
    filter_release(f, &t[1]);
    filter_destroy(f);

    filter_config_init(&cfg);
    cfg.per_source_rate = 1.0;
    cfg.per_source_burst = 2;
    f = make(&cfg, NULL);
    assert_int_equal(decide(f, "192.0.2.7", 100, 0, NULL, &t[0], &step), PC_ACCEPT);
    assert_int_equal(decide(f, "192.0.2.7", 100, 0, NULL, &t[1], &step), PC_ACCEPT);
    assert_int_equal(decide(f, "192.0.2.7", 100, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_RATE);
    assert_int_equal(decide(f, "192.0.2.7", 1100, 0, NULL, &t[2], &step), PC_ACCEPT);
    for (int i = 0; i < 3; i++)
        filter_release(f, &t[i]);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_RATE], 1);
    assert_int_equal(st.accepted, 3);
    filter_destroy(f);
}

/* FILTER_SKIP_SOURCE (a trusted proxy at accept): steps 3-4 skipped, no slot
 * taken; rules and the condition still judge; a second reader index (a
 * worker's) decides for the real client with the limits. */
static void test_skip_source(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    cfg.per_source_rate = 1.0;
    cfg.per_source_burst = 1;
    cfg.max_readers = 2;
    filter_t *f = make(&cfg, "deny 192.0.2.66\n");
    addr_t proxy = A("192.0.2.1"), denied = A("192.0.2.66"), client = A("198.51.100.7");
    filter_ticket_t t[4];
    int step;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            filter_decide_ex(f, 0, &proxy, 0, 0, FILTER_SKIP_SOURCE, NULL, NULL, &t[i], &step),
            PC_ACCEPT);
        assert_int_equal(t[i].slot, TRACK_NO_SLOT);
    }
    assert_int_equal(
        filter_decide_ex(f, 0, &denied, 0, 0, FILTER_SKIP_SOURCE, NULL, NULL, &t[0], &step),
        PC_REJECT);
    assert_int_equal(step, PC_STEP_RULES);
    cond_t c = {PC_REJECT, 0};
    assert_int_equal(
        filter_decide_ex(f, 0, &proxy, 0, 0, FILTER_SKIP_SOURCE, cond_fn, &c, &t[0], &step),
        PC_REJECT);
    assert_int_equal(step, PC_STEP_CONDITION);
    assert_int_equal(c.calls, 1);
    /* the real client, from reader 1, is limited */
    assert_int_equal(filter_decide_ex(f, 1, &client, 0, 0, 0, NULL, NULL, &t[1], &step), PC_ACCEPT);
    assert_true(t[1].slot != TRACK_NO_SLOT);
    assert_int_equal(filter_decide_ex(f, 1, &client, 0, 0, 0, NULL, NULL, &t[2], &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    filter_release(f, &t[1]);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_MAX], 1);
    assert_int_equal(st.rejected[PC_STEP_RULES], 1);
    assert_int_equal(st.accepted, 5);
    assert_int_equal(st.tracker_active, 0);
    filter_destroy(f);
}

static void test_condition_step(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    cfg.per_source_rate = 1.0;
    cfg.per_source_burst = 1;
    filter_t *f = make(&cfg, NULL);
    cond_t c = {PC_REJECT, 0};
    filter_ticket_t t;
    int step;
    /* refused by the condition: the slot and the token are given back */
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, &c, &t, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_CONDITION);
    assert_int_equal(t.slot, TRACK_NO_SLOT);
    addr_t a = A("192.0.2.9");
    assert_int_equal(tracker_count(filter_tracker(f), &a), 0);
    c.verdict = PC_DEFER;
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, &c, &t, &step), PC_DEFER);
    assert_int_equal(step, PC_STEP_CONDITION);
    c.verdict = (pc_verdict_t)42; /* anything else refuses */
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, &c, &t, &step), PC_REJECT);
    c.verdict = PC_ACCEPT;
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, &c, &t, &step), PC_ACCEPT);
    assert_int_equal(tracker_count(filter_tracker(f), &a), 1);
    /* over the limit: the condition is not consulted */
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, &c, NULL, &step), PC_REJECT);
    assert_int_equal(c.calls, 4);
    filter_release(f, &t);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 2);
    assert_int_equal(st.deferred[PC_STEP_CONDITION], 1);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_MAX], 1);
    assert_int_equal(st.accepted, 1);
    filter_destroy(f);
}

static void test_shadow(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.shadow = 1;
    cfg.shadow_condition = 1;
    cfg.per_source_max = 1;
    cfg.per_source_rate = 1.0;
    cfg.per_source_burst = 1;
    filter_t *f = make(&cfg, "deny 192.0.2.0/24\n");
    cond_t c = {PC_REJECT, 0};
    filter_ticket_t t1, t2, t3;
    int step;
    /* everything would refuse; all accepted, each step counted */
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t1, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_RULES);
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t2, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_RULES);
    /* an undenied source over its limits, condition deferring */
    c.verdict = PC_DEFER;
    assert_int_equal(decide(f, "198.51.100.1", 0, 0, &c, &t3, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_COUNT);
    filter_release(f, &t3);
    assert_int_equal(decide(f, "198.51.100.1", 0, 0, &c, &t3, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_SOURCE_RATE);
    assert_int_equal(c.calls, 4);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.accepted, 4);
    assert_int_equal(st.would_reject[PC_STEP_RULES], 2);
    assert_int_equal(st.would_reject[PC_STEP_SOURCE_MAX], 1);
    assert_int_equal(st.would_reject[PC_STEP_SOURCE_RATE], 2);
    assert_int_equal(st.would_reject[PC_STEP_CONDITION], 2);
    assert_int_equal(st.would_defer, 2);
    for (int s = 0; s < PC_STEP_COUNT; s++)
        assert_int_equal(st.rejected[s], 0);
    assert_int_equal(st.tracker_active, 2);
    assert_int_equal(rule_hits(f, 0), 2);
    filter_release(f, &t1);
    filter_release(f, &t2);
    filter_release(f, &t3);
    filter_stats(f, &st);
    assert_int_equal(st.tracker_active, 0);
    assert_true(st.shadow);
    filter_destroy(f);

    /* by default the user condition still applies in shadow mode */
    cfg.shadow_condition = 0;
    f = make(&cfg, "deny 192.0.2.0/24\n");
    c.verdict = PC_REJECT;
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t1, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_CONDITION);
    addr_t a = A("192.0.2.1");
    assert_int_equal(tracker_count(filter_tracker(f), &a), 0); /* slot and token given back */
    c.verdict = PC_ACCEPT;
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t1, &step), PC_ACCEPT);
    assert_int_equal(step, PC_STEP_RULES);
    /* over the rate (no token taken) and refused by the condition: the
     * release must not hand out a token that was never taken */
    c.verdict = PC_REJECT;
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t2, &step), PC_REJECT);
    c.verdict = PC_ACCEPT;
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, &c, &t2, &step), PC_ACCEPT);
    filter_stats(f, &st);
    assert_int_equal(st.would_reject[PC_STEP_RULES], 4);
    assert_int_equal(st.would_reject[PC_STEP_SOURCE_RATE], 2);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 2);
    assert_int_equal(st.would_reject[PC_STEP_CONDITION], 0);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(tracker_count(filter_tracker(f), &a), 2);
    filter_release(f, &t1);
    filter_release(f, &t2);
    filter_destroy(f);
}

/* A peer that is not an IP address (family 0): only capacity and the
 * condition judge it. */
static void test_non_ip_peer(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    filter_t *f = make(&cfg, "deny 0.0.0.0/0\ndeny ::/0\n");
    addr_t a;
    memset(&a, 0, sizeof a);
    cond_t c = {PC_ACCEPT, 0};
    filter_ticket_t t1, t2;
    int step;
    assert_int_equal(filter_decide(f, 0, &a, 0, 0, cond_fn, &c, &t1, &step), PC_ACCEPT);
    assert_int_equal(filter_decide(f, 0, &a, 0, 0, cond_fn, &c, &t2, &step), PC_ACCEPT);
    assert_int_equal(t1.slot, TRACK_NO_SLOT);
    assert_int_equal(c.calls, 2);
    assert_int_equal(rule_hits(f, 0) + rule_hits(f, 1), 0);
    assert_int_equal(filter_decide(f, 0, &a, 0, 1, cond_fn, &c, &t1, &step), PC_DEFER);
    c.verdict = PC_REJECT;
    assert_int_equal(filter_decide(f, 0, &a, 0, 0, cond_fn, &c, &t1, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_CONDITION);
    filter_destroy(f);
}

static void test_tracker_full(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 10;
    cfg.source_table_size = 16;
    cfg.full_policy = TRACKER_FULL_REJECT;
    filter_t *f = make(&cfg, NULL);
    filter_ticket_t t[16];
    char text[32];
    int step;
    for (int i = 0; i < 16; i++) {
        snprintf(text, sizeof text, "10.0.0.%d", i);
        assert_int_equal(decide(f, text, 0, 0, NULL, &t[i], &step), PC_ACCEPT);
    }
    assert_int_equal(decide(f, "10.0.0.200", 0, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.tracker_full, 1);
    assert_int_equal(st.tracker_used, 16);
    assert_int_equal(st.tracker_capacity, 16);
    assert_int_equal(st.full_policy, TRACKER_FULL_REJECT);
    for (int i = 0; i < 16; i++)
        filter_release(f, &t[i]);
    filter_destroy(f);

    /* the default policy: new sources share one overflow entry */
    filter_config_init(&cfg);
    assert_int_equal(cfg.full_policy, TRACKER_FULL_SHARED);
    cfg.per_source_max = 2;
    cfg.source_table_size = 16;
    f = make(&cfg, NULL);
    for (int i = 0; i < 16; i++) {
        snprintf(text, sizeof text, "10.0.0.%d", i);
        assert_int_equal(decide(f, text, 0, 0, NULL, &t[i], &step), PC_ACCEPT);
    }
    filter_ticket_t o1, o2;
    assert_int_equal(decide(f, "10.0.1.1", 0, 0, NULL, &o1, &step), PC_ACCEPT);
    assert_int_equal(decide(f, "10.0.1.2", 0, 0, NULL, &o2, &step), PC_ACCEPT);
    assert_int_equal(decide(f, "10.0.1.3", 0, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    filter_stats(f, &st);
    assert_int_equal(st.tracker_full, 3);
    filter_release(f, &o1);
    filter_release(f, &o2);
    for (int i = 0; i < 16; i++)
        filter_release(f, &t[i]);
    filter_stats(f, &st);
    assert_int_equal(st.tracker_active, 0);
    filter_destroy(f);
}

static void test_ipv4_mapped(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1;
    filter_t *f = make(&cfg, "deny 192.0.2.0/24\ndeny ::/0\n");
    int step;
    filter_ticket_t t;
    /* a mapped peer meets the IPv4 rules, not ::/0 */
    assert_int_equal(decide(f, "::ffff:192.0.2.9", 0, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(rule_hits(f, 0), 1);
    assert_int_equal(rule_hits(f, 1), 0);
    /* and counts as the IPv4 source */
    assert_int_equal(decide(f, "::ffff:198.51.100.9", 0, 0, NULL, &t, &step), PC_ACCEPT);
    assert_int_equal(decide(f, "198.51.100.9", 0, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(step, PC_STEP_SOURCE_MAX);
    filter_release(f, &t);
    assert_int_equal(decide(f, "2001:db8::1", 0, 0, NULL, NULL, &step), PC_REJECT);
    assert_int_equal(rule_hits(f, 1), 1);

    /* from a socket address */
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 77};
    memcpy(&in6.sin6_addr, mapped, 16);
    addr_t a;
    assert_int_equal(addr_from_sockaddr((struct sockaddr *)&in6, &a), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(filter_decide(f, 0, &a, 0, 0, NULL, NULL, &t, &step), PC_REJECT);
    assert_int_equal(rule_hits(f, 0), 2);
    filter_destroy(f);
}

static void test_swap_counters(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    filter_t *f = make(&cfg, "deny 10.0.0.0/8\n"
                             "allow 10.1.0.0/16\n"
                             "deny 192.0.2.0/24\n"
                             "deny 2001:db8::/32\n");
    for (int i = 0; i < 3; i++)
        decide(f, "10.2.3.4", 0, 0, NULL, NULL, NULL);
    for (int i = 0; i < 2; i++)
        decide(f, "10.1.1.1", 0, 0, NULL, NULL, NULL);
    decide(f, "192.0.2.9", 0, 0, NULL, NULL, NULL);
    for (int i = 0; i < 4; i++)
        decide(f, "2001:db8::9", 0, 0, NULL, NULL, NULL);
    pc_rule_info_t top[3];
    assert_int_equal(filter_rules_top(f, top, 3), 3);
    assert_string_equal(top[0].text, "deny 2001:db8::/32");
    assert_int_equal(top[0].hits, 4);
    assert_string_equal(top[1].text, "deny 10.0.0.0/8");
    assert_int_equal(top[1].line, 1);
    assert_int_equal(top[2].hits, 2);
    assert_int_equal(filter_rules_top(f, top, 1), 1);
    assert_int_equal(top[0].hits, 4);

    /* a bad reload never reaches the filter: the rules in force stay */
    pc_rules_t *bad = NULL;
    char err[128];
    assert_int_equal(
        pc_rules_load_string("deny 10.0.0.0/8\nfrobnicate\n", 27, "new", &bad, err, sizeof err),
        PC_EPARSE);
    assert_string_equal(err, "new:2: unknown action 'frobnicate' (expected 'allow' or 'deny')");
    int step;
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, NULL, NULL, &step), PC_REJECT);

    /* reload: 10/8 and 2001:db8::/32 survive (other lines and line numbers),
     * 10.1/16 changes action (not carried), 192.0.2/24 goes, one is new */
    assert_int_equal(filter_set_rules(f, R("# reloaded\n"
                                           "deny 198.51.100.0/24\n"
                                           "deny 10.1.0.0/16\n"
                                           "deny 2001:0db8::/32\n"
                                           "deny 10.0.0.0/8\n")),
                     0);
    assert_int_equal(filter_rules_count(f), 4);
    assert_int_equal(rule_hits(f, 0), 0);
    assert_int_equal(rule_hits(f, 1), 0);
    assert_int_equal(rule_hits(f, 2), 4);
    assert_int_equal(rule_hits(f, 3), 3);
    pc_rule_info_t info;
    assert_int_equal(filter_rules_get(f, 3, &info), 0);
    assert_string_equal(info.text, "deny 10.0.0.0/8");
    assert_int_equal(info.line, 5);
    assert_int_equal(decide(f, "10.2.3.4", 0, 0, NULL, NULL, NULL), PC_REJECT);
    assert_int_equal(rule_hits(f, 3), 4);
    assert_int_equal(decide(f, "192.0.2.9", 0, 0, NULL, NULL, NULL), PC_ACCEPT);
    assert_int_equal(decide(f, "10.1.1.1", 0, 0, NULL, NULL, NULL), PC_REJECT);

    /* the same set twice is refused without taking it */
    pc_rules_t *again = R("deny 10.0.0.0/8\n");
    assert_int_equal(filter_set_rules(f, again), 0);
    assert_int_equal(rule_hits(f, 0), 4);
    assert_int_equal(filter_set_rules(f, again), PC_EINVAL);
    assert_int_equal(rule_hits(f, 0), 4);

    /* no rules: everything passes */
    assert_int_equal(filter_set_rules(f, NULL), 0);
    assert_int_equal(filter_rules_count(f), 0);
    assert_int_equal(filter_rules_get(f, 0, &info), PC_EINVAL);
    assert_int_equal(decide(f, "10.2.3.4", 0, 0, NULL, NULL, NULL), PC_ACCEPT);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.rule_swaps, 4);
    filter_destroy(f);
}

/* A reload carries a counter to the rule with the same prefix: the same
 * address at another length is another rule (IPv4 and IPv6). And "no
 * rules" may be set again. */
static void test_swap_carries_exact_prefix(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_config_init(&cfg);
    filter_t *f = make(&cfg, "deny 10.0.0.0/8\n"
                             "deny 10.0.0.0/16\n"
                             "deny 2001:db8::/32\n"
                             "deny 2001:db8::/48\n");
    decide(f, "10.1.2.3", 0, 0, NULL, NULL, NULL); /* /8 */
    for (int i = 0; i < 2; i++)
        decide(f, "10.0.1.1", 0, 0, NULL, NULL, NULL); /* /16 */
    for (int i = 0; i < 3; i++)
        decide(f, "2001:db8:1::1", 0, 0, NULL, NULL, NULL); /* /32 */
    for (int i = 0; i < 4; i++)
        decide(f, "2001:db8::1", 0, 0, NULL, NULL, NULL); /* /48 */
    assert_int_equal(filter_set_rules(f, R("deny 10.0.0.0/16\n"
                                           "deny 2001:db8::/32\n")),
                     0);
    assert_int_equal(rule_hits(f, 0), 2);
    assert_int_equal(rule_hits(f, 1), 3);
    assert_int_equal(filter_set_rules(f, NULL), 0);
    assert_int_equal(filter_set_rules(f, NULL), 0);
    filter_destroy(f);
}

/* ---- hot swap under load -------------------------------------------------- */

#define SWAPS 300

typedef struct swap_shared_s {
    filter_t *f;
    atomic_int next_reader;
    atomic_int started;
    atomic_int stop;
    atomic_long decisions;
    atomic_long rejects;
} swap_shared_t;

static swap_shared_t ss;

static void reader_thread(void *arg)
{
    (void)arg;
    int me = atomic_fetch_add(&ss.next_reader, 1);
    addr_t a = A(me == 0 ? "10.2.3.4" : "10.200.0.1");
    long rejects = 0, n = 0;
    atomic_fetch_add(&ss.started, 1);
    while (!atomic_load(&ss.stop)) {
        filter_ticket_t t;
        if (filter_decide(ss.f, me, &a, 0, 0, NULL, NULL, &t, NULL) == PC_REJECT)
            rejects++;
        else
            filter_release(ss.f, &t);
        n++;
    }
    atomic_fetch_add(&ss.rejects, rejects);
    atomic_fetch_add(&ss.decisions, n);
}

/* A filter with "deny 10.0.0.0/8" in force and two accept threads deciding
 * on it (reader_thread) until ss.stop. */
static void start_readers(pc_thread_t th[2])
{
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.max_readers = 2;
    cfg.per_source_max = 100;
    memset(&ss, 0, sizeof ss);
    ss.f = make(&cfg, "deny 10.0.0.0/8\n");
    for (int i = 0; i < 2; i++)
        assert_int_equal(pc__thread_start(&th[i], reader_thread, NULL, "reader"), 0);
    while (atomic_load(&ss.started) < 2)
        pc__sleep_ms(1);
}

/* Two accept threads decide continuously while sets are swapped under them:
 * no decision is lost or double counted, and the surviving rule's counter
 * ends exactly at the number of decisions it made. */
static void test_swap_under_load(void **state)
{
    (void)state;
    pc_thread_t th[2];
    start_readers(th);
    for (int i = 0; i < SWAPS; i++) {
        const char *text = (i & 1) ? "allow 172.16.0.0/12\ndeny 10.0.0.0/8\n"
                                   : "deny 10.0.0.0/8\ndeny 192.0.2.0/24\n";
        assert_int_equal(filter_set_rules(ss.f, R(text)), 0);
    }
    atomic_store(&ss.stop, 1);
    for (int i = 0; i < 2; i++)
        pc__thread_join(th[i]);
    long decisions = atomic_load(&ss.decisions);
    assert_true(decisions > 0);
    assert_int_equal(atomic_load(&ss.rejects), decisions);
    size_t n = filter_rules_count(ss.f);
    uint64_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        pc_rule_info_t info;
        assert_int_equal(filter_rules_get(ss.f, i, &info), 0);
        if (strcmp(info.text, "deny 10.0.0.0/8") == 0) hits = info.hits;
    }
    assert_int_equal(hits, (uint64_t)decisions);
    filter_stats_t st;
    filter_stats(ss.f, &st);
    assert_int_equal(st.rejected[PC_STEP_RULES], (uint64_t)decisions);
    assert_int_equal(st.rule_swaps, SWAPS + 1);
    filter_destroy(ss.f);
}

/* Swaps to NULL (no rules) and back while two accept threads decide: a
 * reader that published the old set and then found none must not leave it
 * published, or the swap waits for it forever (and with it every later
 * swap and stats call, which take the writer mutex). The swaps run on their
 * own thread so that a stall fails the test instead of hanging it. */
#define NULL_SWAPS 3000

static atomic_int g_null_swaps_done;

static void null_swapper(void *arg)
{
    (void)arg;
    for (int i = 0; i < NULL_SWAPS; i++) {
        pc_rules_t *r = (i & 1) ? NULL : R("deny 10.0.0.0/8\n");
        if (filter_set_rules(ss.f, r) != 0) return;
        atomic_store(&g_null_swaps_done, i + 1);
    }
}

static void test_swap_to_null_under_load(void **state)
{
    (void)state;
    atomic_store(&g_null_swaps_done, 0);
    pc_thread_t th[2], sw;
    start_readers(th);
    assert_int_equal(pc__thread_start(&sw, null_swapper, NULL, "swapper"), 0);
    int last = -1;
    uint64_t still_since = pc__now_ms();
    while (atomic_load(&g_null_swaps_done) < NULL_SWAPS) {
        int done = atomic_load(&g_null_swaps_done);
        if (done != last) {
            last = done;
            still_since = pc__now_ms();
        } else if (pc__now_ms() - still_since > 10000) {
            /* the threads cannot be joined; the process reports the failure */
            atomic_store(&ss.stop, 1);
            fail_msg("a swap has not returned for 10 s after %d swaps", done);
        }
        pc__sleep_ms(5);
    }
    pc__thread_join(sw);
    atomic_store(&ss.stop, 1);
    for (int i = 0; i < 2; i++)
        pc__thread_join(th[i]);
    assert_true(atomic_load(&ss.decisions) > 0);
    filter_stats_t st;
    filter_stats(ss.f, &st);
    assert_int_equal(st.rule_swaps, NULL_SWAPS + 1);
    assert_int_equal(filter_rules_count(ss.f), 0); /* the last swap removed the rules */
    filter_destroy(ss.f);
}

static void test_config(void **state)
{
    (void)state;
    filter_config_t cfg;
    filter_t *f;
    filter_config_init(&cfg);
    assert_int_equal(cfg.source_prefix_v4, 32);
    assert_int_equal(cfg.source_prefix_v6, 64);
    assert_int_equal(cfg.at_capacity, PC_CAPACITY_DEFER);
    assert_int_equal(cfg.max_readers, 1);
    cfg.max_readers = 0;
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    filter_config_init(&cfg);
    cfg.per_source_rate = -1;
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    cfg.per_source_rate = NAN; /* not a rate either */
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    filter_config_init(&cfg);
    cfg.max_readers = 4097;
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    cfg.max_readers = 4096; /* the largest taken */
    assert_int_equal(filter_create(&cfg, &f), 0);
    filter_destroy(f);
    filter_config_init(&cfg);
    cfg.per_source_rate = 10;
    cfg.per_source_burst = 0;
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    filter_config_init(&cfg);
    cfg.source_prefix_v6 = 200;
    cfg.per_source_max = 1;
    assert_int_equal(filter_create(&cfg, &f), PC_EINVAL);
    /* no limits: no tracker, decisions hold nothing */
    filter_config_init(&cfg);
    f = make(&cfg, NULL);
    assert_null(filter_tracker(f));
    filter_ticket_t t;
    int step;
    assert_int_equal(decide(f, "192.0.2.1", 0, 0, NULL, &t, &step), PC_ACCEPT);
    assert_int_equal(t.slot, TRACK_NO_SLOT);
    /* an out-of-range reader index is refused, not trusted */
    addr_t a = A("192.0.2.1");
    pc_log_set_level(PC_LOG_OFF);
    assert_int_equal(filter_decide(f, 1, &a, 0, 0, NULL, NULL, &t, &step), PC_REJECT);
    pc_log_set_level(PC_LOG_INFO);
    filter_stats_t st;
    filter_stats(f, &st);
    assert_int_equal(st.tracker_capacity, 0);
    filter_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_first),
        cmocka_unit_test(test_rules_step),
        cmocka_unit_test(test_source_steps),
        cmocka_unit_test(test_condition_step),
        cmocka_unit_test(test_shadow),
        cmocka_unit_test(test_non_ip_peer),
        cmocka_unit_test(test_tracker_full),
        cmocka_unit_test(test_ipv4_mapped),
        cmocka_unit_test(test_swap_counters),
        cmocka_unit_test(test_swap_carries_exact_prefix),
        cmocka_unit_test(test_swap_under_load),
        cmocka_unit_test(test_swap_to_null_under_load),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_skip_source),
        /* a deferred connection asked again */
        cmocka_unit_test(test_retry_counts_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
