/* SPDX-License-Identifier: MIT */
/* The accept filter over loopback, with distinct client sources (127.0.0.2,
 * 127.0.0.3, ...): deny by /32 and /24 (on_open never runs), allow,
 * per-source maximum (slots come back after close), per-source rate, reload,
 * bad reload, shadow mode (with and without the condition), a full per-source
 * table (fail closed or shared), a rules text plus a deny list with duplicates. A rejected client
 * is refused (Windows, pre-handshake) or reset right after accept (elsewhere): never served. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pick.h"

/* 1: served (echo came back), 0: refused, reset or closed without data. */
static int served_from(const char *src)
{
    /* generous timeout: a reject is a reset or refusal and comes at once;
     * only a sanitizer-slowed server makes a served client wait */
    shim_sock_t s = shim_connect("127.0.0.1", g_port, src, 5000);
    if (s == SHIM_INVALID) return 0;
    char c = 0;
    int ok = shim_send_all(s, "s", 1) == 0 && shim_recv_some(s, &c, 1) == 1 && c == 's';
    shim_close(s);
    return ok;
}

static pc_rules_t *rules_from(const char *text)
{
    pc_rules_t *r = NULL;
    char err[256];
    assert_int_equal(pc_rules_load_string(text, strlen(text), "test", &r, err, sizeof err), 0);
    return r;
}

static void deny_by_32_and_24(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.rules = rules_from("deny 127.0.0.2/32\n"
                           "deny 127.0.1.0/24\n"
                           "allow 127.0.0.0/8\n");
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.2"), 0);
    assert_int_equal(served_from("127.0.1.1"), 0);
    assert_int_equal(served_from("127.0.1.200"), 0);
    int opens_after_denied = atomic_load(&g_opens);
    assert_int_equal(opens_after_denied, 0); /* on_open never ran for them */
    assert_int_equal(served_from("127.0.0.3"), 1);
    assert_int_equal(served_from("127.0.2.1"), 1);
    pc_server_stats_t st = stats();
    assert_int_equal(st.rejected[PC_STEP_RULES], 3);
    assert_int_equal(st.rule_count, 3);
    /* the hits are counted per rule */
    pc_rule_info_t top[3];
    int n = pc_server_top_rules(g_srv, top, 3);
    assert_int_equal(n, 3);
    assert_string_equal(top[0].text, "deny 127.0.1.0/24");
    assert_int_equal(top[0].hits, 2);
    assert_int_equal(top[1].hits + top[2].hits, 3);
}

static void per_source_max(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.per_source_max = 5;
    start_server(&cfg);
    shim_sock_t held[5];
    for (int i = 0; i < 5; i++) {
        held[i] = shim_connect("127.0.0.1", g_port, "127.0.0.7", 2000);
        assert_true(held[i] != SHIM_INVALID);
        expect_echo(held[i], "held");
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(served_from("127.0.0.7"), 0);
    assert_int_equal(served_from("127.0.0.8"), 1); /* another source is unaffected */
    assert_int_equal(stats().rejected[PC_STEP_SOURCE_MAX], 3);
    shim_close(held[0]);
    shim_close(held[1]);
    WAIT_FOR(stats().active == 3, 2000);
    assert_int_equal(served_from("127.0.0.7"), 1); /* slots came back */
    /* that connection's slot is released when the server has closed it */
    WAIT_FOR(stats().active == 3, 2000);
    shim_sock_t again[2];
    for (int i = 0; i < 2; i++) {
        again[i] = shim_connect("127.0.0.1", g_port, "127.0.0.7", 2000);
        expect_echo(again[i], "again");
    }
    assert_int_equal(served_from("127.0.0.7"), 0); /* 5 held again */
    for (int i = 2; i < 5; i++)
        shim_close(held[i]);
    for (int i = 0; i < 2; i++)
        shim_close(again[i]);
}

static void per_source_rate(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.per_source_rate = 20;
    cfg.per_source_burst = 20;
    start_server(&cfg);
    int ok = 0;
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < 60; i++)
        ok += served_from("127.0.0.9");
    uint64_t dt = shim_now_ms() - t0;
    /* burst 20, plus 20/s refill over the run */
    int upper = 20 + (int)(dt * 20 / 1000) + 1;
    assert_true(ok >= 15);
    assert_true(ok <= upper);
    assert_true(stats().rejected[PC_STEP_SOURCE_RATE] >= (uint64_t)(60 - upper));
    assert_int_equal(served_from("127.0.0.10"), 1); /* another source has its own bucket */
}

/* per_source_burst 0 is max(1, rate), rate rounded up: 2.2 a second gives
 * a burst of 3, 0.0005 a burst of 1. Each source's bucket starts full. */
static void per_source_burst_default(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.per_source_rate = 2.2; /* a token per 455 ms */
    start_server(&cfg);
    int ok = 0;
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < 6; i++)
        ok += served_from("127.0.0.11");
    uint64_t dt = shim_now_ms() - t0;
    int upper = 3 + (int)(dt * 22 / 10000);
    if (ok < 3 || ok > upper)
        fail_msg("%d of 6 served in %llu ms, burst 3", ok, (unsigned long long)dt);
    teardown(NULL);

    base_config(&cfg);
    cfg.per_source_rate = 0.0005; /* a token per 2000 s */
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.12"), 1);
    assert_int_equal(served_from("127.0.0.12"), 0);
    assert_int_equal(served_from("127.0.0.13"), 1); /* its own bucket */
    assert_int_equal(stats().rejected[PC_STEP_SOURCE_RATE], 1);
}

static void reload_and_bad_reload(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.rules = rules_from("deny 127.0.0.2/32\n");
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.2"), 0);
    assert_int_equal(served_from("127.0.0.3"), 1);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.0.3/32\n"
                                                           "deny 127.0.0.2/32\n")),
                     0);
    assert_int_equal(served_from("127.0.0.3"), 0);
    assert_int_equal(served_from("127.0.0.2"), 0);
    /* the surviving rule kept its hits across the reload */
    pc_rule_info_t top[2];
    assert_int_equal(pc_server_top_rules(g_srv, top, 2), 2);
    assert_string_equal(top[0].text, "deny 127.0.0.2/32");
    assert_int_equal(top[0].hits, 2);
    /* a bad rule set is refused whole with FILE:LINE, the old one stays */
    pc_rules_t *bad = NULL;
    char err[256];
    const char *text = "deny 127.0.0.4/32\nallow 127.0.0.0/40\n";
    assert_int_equal(pc_rules_load_string(text, strlen(text), "bad.rules", &bad, err, sizeof err),
                     PC_EPARSE);
    assert_null(bad);
    assert_non_null(strstr(err, "bad.rules:2:"));
    assert_int_equal(served_from("127.0.0.3"), 0);
    assert_int_equal(served_from("127.0.0.4"), 1);
    /* removing every rule */
    assert_int_equal(pc_server_set_rules(g_srv, NULL), 0);
    assert_int_equal(served_from("127.0.0.3"), 1);
    assert_int_equal(stats().rule_count, 0);
    /* and again, with none in force: NULL is no set in force, still 0 */
    assert_int_equal(pc_server_set_rules(g_srv, NULL), 0);
    assert_int_equal(served_from("127.0.0.3"), 1);
}

/* A rules text plus a Spamhaus-shaped deny list with repeats, built into one
 * set: what the lists deny is refused, the repeats are counted in the stats
 * (also after a reload that drops them). */
static void lists_with_duplicates(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    const char *site = "allow 127.0.0.9/32\n";
    const char *drop = "; DROP-shaped\n"
                       "127.0.1.0/24 ; SBL1\n"
                       "127.0.0.2 ; SBL2\n"
                       "127.0.1.0/24 ; SBL1 again, as concatenated lists have it\n"
                       "127.0.0.2/32\n";
    pc_rules_builder_t *b = NULL;
    char err[256];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(
        pc_rules_builder_add_string(b, PC_RULES_TEXT, site, strlen(site), "site", err, sizeof err),
        0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, drop, strlen(drop), "drop",
                                                 err, sizeof err),
                     0);
    assert_int_equal(pc_rules_builder_finish(b, &cfg.rules, err, sizeof err), 0);
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.2"), 0);
    assert_int_equal(served_from("127.0.1.7"), 0);
    assert_int_equal(served_from("127.0.0.9"), 1);
    assert_int_equal(served_from("127.0.0.3"), 1);
    pc_server_stats_t st = stats();
    assert_int_equal(st.rule_count, 3);
    assert_int_equal(st.rule_duplicates, 2);
    assert_int_equal(st.rejected[PC_STEP_RULES], 2);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.0.3/32\n")), 0);
    assert_int_equal(served_from("127.0.0.3"), 0);
    assert_int_equal(served_from("127.0.0.2"), 1);
    st = stats();
    assert_int_equal(st.rule_count, 1);
    assert_int_equal(st.rule_duplicates, 0);
}

static void shadow_counts_but_accepts(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.rules = rules_from("deny 127.0.0.2/32\n");
    cfg.per_source_max = 1;
    cfg.shadow = 1;
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.2"), 1);
    shim_sock_t a = shim_connect("127.0.0.1", g_port, "127.0.0.5", 2000);
    expect_echo(a, "first");
    assert_int_equal(served_from("127.0.0.5"), 1); /* over the max, served anyway */
    shim_close(a);
    pc_server_stats_t st = stats();
    assert_int_equal(st.would_reject[PC_STEP_RULES], 1);
    assert_int_equal(st.would_reject[PC_STEP_SOURCE_MAX], 1);
    assert_int_equal(st.rejected[PC_STEP_RULES] + st.rejected[PC_STEP_SOURCE_MAX], 0);
    assert_int_equal(atomic_load(&g_opens), 3);
}

/* A per-source table of 16 entries (the smallest) filled by 16 sources that
 * hold a connection each; a 17th source (127.0.0.40) then finds no entry.
 * Closes the held connections at the end. */
static void fill_source_table(int full_reject, int expect_new_served)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.per_source_max = 4;
    cfg.source_table_size = 1; /* rounded up to the probe window: 16 */
    cfg.source_table_full_reject = full_reject;
    start_server(&cfg);
    shim_sock_t held[16];
    char src[32];
    for (int i = 0; i < 16; i++) {
        snprintf(src, sizeof src, "127.0.0.%d", 10 + i);
        held[i] = shim_connect("127.0.0.1", g_port, src, 2000);
        assert_true(held[i] != SHIM_INVALID);
        expect_echo(held[i], "held");
    }
    assert_int_equal(served_from("127.0.0.40"), expect_new_served);
    pc_server_stats_t st = stats();
    assert_true(st.source_table_full >= 1);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_MAX], expect_new_served ? 0 : 1);
    assert_int_equal(served_from("127.0.0.10"), 1); /* has its entry */
    for (int i = 0; i < 16; i++)
        shim_close(held[i]);
}

/* source_table_full_reject: a full per-source table fails closed: the new
 * source is refused; a source already in the table is still served. */
static void full_table_rejects(void **state)
{
    (void)state;
    fill_source_table(1, 0);
}

/* The default: a full table shares one overflow entry, the new source is
 * served. */
static void full_table_shares(void **state)
{
    (void)state;
    fill_source_table(0, 1);
}

/* shadow_condition: in shadow mode the user condition is dry-run too; without
 * it the condition still rejects. */
static void shadow_condition_dry_runs(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    g_reject_src = "127.0.0.6";
    cfg.shadow = 1;
    cfg.shadow_condition = 1;
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.6"), 1);
    pc_server_stats_t st = stats();
    assert_int_equal(st.would_reject[PC_STEP_CONDITION], 1);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 0);
}

static void shadow_keeps_condition(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    g_reject_src = "127.0.0.6";
    cfg.shadow = 1;
    start_server(&cfg);
    assert_int_equal(served_from("127.0.0.6"), 0);
    assert_int_equal(served_from("127.0.0.7"), 1);
    pc_server_stats_t st = stats();
    assert_int_equal(st.would_reject[PC_STEP_CONDITION], 0);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 1);
}

/* After the handshake (Linux; Windows with conditional accept off) a
 * rejected connection is reset (SO_LINGER 0), not ended with a FIN: the
 * client sees a refusal, not an empty answer, and the server keeps no
 * TIME_WAIT for it. */
static void reject_is_reset(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.conditional_accept = PC_COND_ACCEPT_OFF;
    g_reject_src = "127.0.0.8";
    start_server(&cfg);
    shim_sock_t s = shim_connect("127.0.0.1", g_port, "127.0.0.8", 5000);
    assert_true(s != SHIM_INVALID);
    shim_set_timeout(s, 5000);
    size_t n = 0;
    assert_int_equal(shim_wait_reset(s, &n), -1); /* reset, not FIN (0) or timeout (-2) */
    assert_int_equal(n, 0);
    shim_close(s);
    assert_int_equal(stats().rejected[PC_STEP_CONDITION], 1);
    assert_int_equal(atomic_load(&g_opens), 0);
}

/* A connection the condition defers is asked again until it decides; the
 * steps before the condition are counted once for it, not once per ask: one
 * rule hit, one would-be reject (shadow mode), one deferral. */
static void deferred_counts_once(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.rules = rules_from("deny 127.0.0.2/32\n");
    cfg.shadow = 1;
    start_server(&cfg);
    atomic_store(&g_defer_left, 10);
    assert_int_equal(served_from("127.0.0.2"), 1);
    assert_int_equal(atomic_load(&g_defer_left), 0); /* asked 11 times */
    pc_server_stats_t st = stats();
    assert_int_equal(st.deferred, 1);
    assert_int_equal(st.would_reject[PC_STEP_RULES], 1);
    pc_rule_info_t top[1];
    assert_int_equal(pc_server_top_rules(g_srv, top, 1), 1);
    assert_int_equal(top[0].hits, 1);
}

/* Every ask about a deferred connection reserves a slot under
 * max_connections and gives it back unless it admits: once the connection
 * that was deferred three times closes, nothing is held. */
static void deferred_asks_give_slots_back(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.conditional_accept = PC_COND_ACCEPT_OFF;
    start_server(&cfg);
    atomic_store(&g_defer_left, 3);
    assert_int_equal(served_from("127.0.0.2"), 1);
    assert_int_equal(atomic_load(&g_defer_left), 0);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.deferred, 1);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.active, 0);
}

/* A connection the condition defers past defer_timeout_ms is rejected, and
 * counted as a reject of the step that deferred it (the condition), not of
 * capacity. */
static void deferral_timeout_counts_its_step(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.conditional_accept = PC_COND_ACCEPT_OFF;
    cfg.defer_timeout_ms = 200;
    start_server(&cfg);
    atomic_store(&g_defer_left, 1000000);
    shim_sock_t s = shim_connect("127.0.0.1", g_port, "127.0.0.2", 5000);
    assert_true(s != SHIM_INVALID);
    WAIT_FOR(stats().rejected[PC_STEP_CONDITION] + stats().rejected[PC_STEP_CAPACITY] == 1, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.deferred, 1);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 1);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 0);
    shim_close(s);
    assert_int_equal(atomic_load(&g_opens), 0);
    atomic_store(&g_defer_left, 0);
}

/* A stop while the accept thread holds a connection the condition keeps
 * deferring ends the hold (the connection is rejected): pc_server_stop does
 * not wait out defer_timeout_ms. */
static void stop_ends_a_deferral(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.conditional_accept = PC_COND_ACCEPT_OFF;
    cfg.defer_timeout_ms = 10000;
    start_server(&cfg);
    atomic_store(&g_defer_left, 1000000);
    shim_sock_t s = shim_connect("127.0.0.1", g_port, "127.0.0.2", 5000);
    assert_true(s != SHIM_INVALID);
    WAIT_FOR(stats().deferred == 1, 5000);
    assert_int_equal(stats().deferred, 1);
    uint64_t t0 = shim_now_ms();
    assert_int_equal(pc_server_stop(g_srv, 0), 0);
    uint64_t took = shim_now_ms() - t0;
    shim_set_timeout(s, 5000);
    char c = 0;
    assert_true(shim_send_all(s, "s", 1) != 0 || shim_recv_some(s, &c, 1) <= 0); /* never served */
    shim_close(s);
    if (took >= 2000)
        fail_msg("pc_server_stop took %llu ms behind a deferred connection",
                 (unsigned long long)took);
    assert_int_equal(atomic_load(&g_opens), 0);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(deny_by_32_and_24, teardown),
        cmocka_unit_test_teardown(per_source_max, teardown),
        cmocka_unit_test_teardown(per_source_rate, teardown),
        cmocka_unit_test_teardown(per_source_burst_default, teardown),
        cmocka_unit_test_teardown(reload_and_bad_reload, teardown),
        cmocka_unit_test_teardown(shadow_counts_but_accepts, teardown),
        cmocka_unit_test_teardown(lists_with_duplicates, teardown),
        cmocka_unit_test_teardown(full_table_rejects, teardown),
        cmocka_unit_test_teardown(full_table_shares, teardown),
        cmocka_unit_test_teardown(shadow_condition_dry_runs, teardown),
        cmocka_unit_test_teardown(shadow_keeps_condition, teardown),
        cmocka_unit_test_teardown(deferred_counts_once, teardown),
        cmocka_unit_test_teardown(reject_is_reset, teardown),
        cmocka_unit_test_teardown(deferred_asks_give_slots_back, teardown),
        cmocka_unit_test_teardown(stop_ends_a_deferral, teardown),
        cmocka_unit_test_teardown(deferral_timeout_counts_its_step, teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("filter", tests, NULL, NULL);
}
