/* SPDX-License-Identifier: MIT */
/* The log sink (core/log.c): a sink switched while other threads log gets
 * every line with its own user pointer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/thread.h"

typedef struct {
    int tag;
    atomic_long lines;
} sink_state_t;

static sink_state_t s1 = {1, 0}, s2 = {2, 0};
static atomic_long g_mixed;
static atomic_int g_stop;

static void sink1(void *user, pc_log_level_t level, const char *line)
{
    (void)level;
    (void)line;
    sink_state_t *st = user;
    if (st != &s1) atomic_fetch_add(&g_mixed, 1); /* sink1 with sink2's pointer */
    atomic_fetch_add(&st->lines, 1);
}

static void sink2(void *user, pc_log_level_t level, const char *line)
{
    (void)level;
    (void)line;
    sink_state_t *st = user;
    if (st != &s2) atomic_fetch_add(&g_mixed, 1);
    atomic_fetch_add(&st->lines, 1);
}

static void logger(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stop))
        PC_LOGW("a line %d", 1);
}

/* Two threads log while the main thread switches between two sinks: no
 * line reaches a sink with the other's pointer (with the function and the
 * pointer stored apart, thousands per second did), and both sinks get
 * lines. */
static void switch_while_logging(void **state)
{
    (void)state;
    pc_log_set_level(PC_LOG_WARN);
    pc_log_set_handler(sink1, &s1);
    pc_thread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pc__thread_start(&t[i], logger, NULL, "logger"), 0);
    /* switch for 300 ms and until each sink has had lines (at most 10 s) */
    uint64_t t0 = pc__now_ms();
    for (long i = 0;; i++) {
        pc_log_set_handler((i & 1) ? sink1 : sink2, (i & 1) ? (void *)&s1 : (void *)&s2);
        uint64_t ms = pc__now_ms() - t0;
        if (ms > 10000) break;
        if (ms >= 300 && atomic_load(&s1.lines) >= 1000 && atomic_load(&s2.lines) >= 1000) break;
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < 2; i++)
        pc__thread_join(t[i]);
    pc_log_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&g_mixed), 0);
    assert_true(atomic_load(&s1.lines) > 0);
    assert_true(atomic_load(&s2.lines) > 0);
}

/* NULL restores the default sink; a sink set again is the one that gets
 * the lines. */
static void set_and_restore(void **state)
{
    (void)state;
    pc_log_set_level(PC_LOG_WARN);
    atomic_store(&s1.lines, 0);
    atomic_store(&s2.lines, 0);
    pc_log_set_handler(sink2, &s2);
    pc_log_set_handler(sink1, &s1);
    PC_LOGW("to sink1");
    pc_log_set_handler(NULL, NULL);
    PC_LOGD("below the level");
    pc_log_set_handler(sink2, &s2);
    PC_LOGW("to sink2");
    PC_LOGD("below the level");
    pc_log_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&s1.lines), 1);
    assert_int_equal(atomic_load(&s2.lines), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(switch_while_logging),
        cmocka_unit_test(set_and_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
