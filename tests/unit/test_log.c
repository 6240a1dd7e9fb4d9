/* SPDX-License-Identifier: MIT */
/* The log sink (core/log.c): a sink switched while other threads log gets
 * every line with its own user pointer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

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

/* A sink is its function and its user pointer: one function set with two
 * pointers in turn gets each line with the pointer in force (a record found
 * by its function alone kept the first pointer). */
static void count_user(void *user, pc_log_level_t level, const char *line)
{
    (void)level;
    (void)line;
    atomic_fetch_add(&((sink_state_t *)user)->lines, 1);
}

static void same_function_other_pointer(void **state)
{
    (void)state;
    pc_log_set_level(PC_LOG_WARN);
    atomic_store(&s1.lines, 0);
    atomic_store(&s2.lines, 0);
    pc_log_set_handler(count_user, &s1);
    PC_LOGW("to s1");
    pc_log_set_handler(count_user, &s2);
    PC_LOGW("to s2");
    pc_log_set_handler(count_user, &s1); /* a pair set before: its record again */
    PC_LOGW("to s1 again");
    pc_log_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&s1.lines), 2);
    assert_int_equal(atomic_load(&s2.lines), 1);
}

/* The level in force before any pc_log_set_level is info: info lines are
 * logged, debug ones are not. (First in the list: no test has set one.) */
static void info_by_default(void **state)
{
    (void)state;
    atomic_store(&s1.lines, 0);
    pc_log_set_handler(count_user, &s1);
    PC_LOGD("debug: below the default");
    PC_LOGI("info: the default");
    pc_log_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&s1.lines), 1);
}

/* PC_LOG_OFF is a threshold, not a level a line has: a line given it is
 * dropped whatever the level in force (the default sink has no name for
 * it: it read past its table). */
static void off_is_no_level(void **state)
{
    (void)state;
    atomic_store(&s1.lines, 0);
    pc_log_set_handler(count_user, &s1);
    pc_log_set_level(PC_LOG_OFF);
    pc__log(PC_LOG_OFF, "never");
    PC_LOGE("off: not even errors");
    pc_log_set_level(PC_LOG_DEBUG);
    pc__log(PC_LOG_OFF, "never");
    PC_LOGD("debug: everything");
    pc_log_set_handler(NULL, NULL);
    pc_log_set_level(PC_LOG_WARN);
    assert_int_equal(atomic_load(&s1.lines), 1);
}

#ifndef _WIN32
/* The default sink writes "portcullis LEVEL: line" to stderr, one line per
 * call, LEVEL named as the line's level. */
static void default_sink_names_levels(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(fileno(stderr));
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fileno(stderr)) >= 0);
    pc_log_set_handler(NULL, NULL);
    pc_log_set_level(PC_LOG_DEBUG);
    PC_LOGD("d %d", 1);
    PC_LOGI("i %d", 2);
    PC_LOGW("w %d", 3);
    PC_LOGE("e %d", 4);
    pc_log_set_level(PC_LOG_WARN);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    char out[512];
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    fclose(tmp);
    out[n] = 0;
    assert_string_equal(out, "portcullis debug: d 1\nportcullis info: i 2\n"
                             "portcullis warn: w 3\nportcullis error: e 4\n");
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(info_by_default),           cmocka_unit_test(switch_while_logging),
        cmocka_unit_test(set_and_restore),           cmocka_unit_test(same_function_other_pointer),
        cmocka_unit_test(off_is_no_level),
#ifndef _WIN32
        cmocka_unit_test(default_sink_names_levels),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
