/* SPDX-License-Identifier: MIT */
/* Environment-variable knobs: the one parser (core/env.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/env.h"
#include "portcullis.h"

#define VAR "PORTCULLIS_TEST_ENV_KNOB"

static void set(const char *v)
{
#ifdef _WIN32
    _putenv_s(VAR, v ? v : "");
#else
    if (v)
        setenv(VAR, v, 1);
    else
        unsetenv(VAR);
#endif
}

/* Warnings logged while a check runs: how many, and the last one. */
static int g_warns;
static char g_last[256];

static void sink(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    if (level != PC_LOG_WARN) return;
    g_warns++;
    snprintf(g_last, sizeof g_last, "%s", line);
}

static void warns_begin(void)
{
    g_warns = 0;
    g_last[0] = 0;
    pc_log_set_handler(sink, NULL);
}

static void warns_end(void)
{
    pc_log_set_handler(NULL, NULL);
}

static void value(void **state)
{
    (void)state;
    set(NULL);
    assert_null(pc__env(VAR));
    set("");
    assert_null(pc__env(VAR));
    set("epoll");
    assert_string_equal(pc__env(VAR), "epoll");
    set(NULL);
}

static void on_off_switch(void **state)
{
    (void)state;
    set(NULL);
    assert_int_equal(pc__env_switch(VAR), -1);
    set("0");
    assert_int_equal(pc__env_switch(VAR), 0);
    set("off");
    assert_int_equal(pc__env_switch(VAR), 0);
    set("1");
    assert_int_equal(pc__env_switch(VAR), 1);
    set("on");
    assert_int_equal(pc__env_switch(VAR), 1);
    assert_int_equal(g_warns, 0);
    warns_begin();
    set("yes"); /* not a switch: the default, and a warning that says so */
    assert_int_equal(pc__env_switch(VAR), -1);
    assert_int_equal(g_warns, 1);
    assert_non_null(strstr(g_last, VAR "=yes ignored (allowed: 0, off, 1, on)"));
    set("2");
    assert_int_equal(pc__env_switch(VAR), -1);
    assert_int_equal(g_warns, 2);
    set(NULL);
    assert_int_equal(pc__env_switch(VAR), -1);
    assert_int_equal(g_warns, 2); /* unset is not a mistake */
    warns_end();
}

/* A word among a few (PORTCULLIS_URING_RECV, _TASKRUN): a misspelt one ran
 * the default without a word. */
static void choice(void **state)
{
    (void)state;
    static const char *const modes[] = {"multishot", "poll"};
    warns_begin();
    set(NULL);
    assert_int_equal(pc__env_choice(VAR, modes, 2), -1);
    set("");
    assert_int_equal(pc__env_choice(VAR, modes, 2), -1);
    set("multishot");
    assert_int_equal(pc__env_choice(VAR, modes, 2), 0);
    set("poll");
    assert_int_equal(pc__env_choice(VAR, modes, 2), 1);
    assert_int_equal(g_warns, 0);
    set("pol");
    assert_int_equal(pc__env_choice(VAR, modes, 2), -1);
    assert_int_equal(g_warns, 1);
    assert_non_null(strstr(g_last, VAR "=pol ignored (allowed: multishot, poll)"));
    set("POLL"); /* exact words only */
    assert_int_equal(pc__env_choice(VAR, modes, 2), -1);
    assert_int_equal(g_warns, 2);
    set(NULL);
    warns_end();
}

/* The allowed words of a refused value, listed in the warning, are cut to
 * its buffer: a list longer than that (here 12 words of 20 letters) is
 * shortened, the value still refused; counting a word that did not fit as
 * written took the offset past the buffer, and the next words were written
 * beyond it. The list is cut after a whole word and says so with ", ..."
 * (each word that did not fit overwrote the last one's piece: the list
 * ended in a piece of the last word, those between skipped unsaid). A first
 * word too long for the line gives "...". */
static void choice_long_list(void **state)
{
    (void)state;
    static const char *const words[] = {
        "aaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaa3",
        "aaaaaaaaaaaaaaaaaaa4", "aaaaaaaaaaaaaaaaaaa5", "aaaaaaaaaaaaaaaaaaa6",
        "aaaaaaaaaaaaaaaaaaa7", "aaaaaaaaaaaaaaaaaaa8", "aaaaaaaaaaaaaaaaaaa9",
        "aaaaaaaaaaaaaaaaaa10", "aaaaaaaaaaaaaaaaaa11", "aaaaaaaaaaaaaaaaaa12",
    };
    warns_begin();
    set("aaaaaaaaaaaaaaaaaa12");
    assert_int_equal(pc__env_choice(VAR, words, 12), 11);
    set("b");
    assert_int_equal(pc__env_choice(VAR, words, 12), -1);
    assert_int_equal(g_warns, 1);
    assert_non_null(strstr(g_last, VAR "=b ignored (allowed: aaaaaaaaaaaaaaaaaaa1, "));
    assert_null(strstr(g_last, "aaaaaaaaaaaaaaaaaa12")); /* past the buffer: cut */
    /* five words of 20 letters and their commas, then ", ..." fit 128 bytes */
    assert_non_null(strstr(g_last, "aaaaaaaaaaaaaaaaaaa4, aaaaaaaaaaaaaaaaaaa5, ...)"));
    assert_null(strstr(g_last, "aaaaaaaaaaaaaaaaaaa6"));
    static const char *const one[] = {
        "a-word-longer-than-the-line-a-word-longer-than-the-line-a-word-longer-than-the-line-"
        "a-word-longer-than-the-line-a-word-longer-than-the-line"};
    assert_int_equal(pc__env_choice(VAR, one, 1), -1);
    assert_int_equal(g_warns, 2);
    assert_non_null(strstr(g_last, VAR "=b ignored (allowed: ...)"));
    set(NULL);
    warns_end();
}

static void flag(void **state)
{
    (void)state;
    set(NULL);
    assert_int_equal(pc__env_flag(VAR), 0);
    set("");
    assert_int_equal(pc__env_flag(VAR), 0);
    set("0");
    assert_int_equal(pc__env_flag(VAR), 0);
    set("1");
    assert_int_equal(pc__env_flag(VAR), 1);
    set("anything");
    assert_int_equal(pc__env_flag(VAR), 1);
    set(NULL);
}

static void bounded_uint(void **state)
{
    (void)state;
    set(NULL);
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("7");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 7);
    set("1");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 1);
    set("100");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 100);
    errno = ERANGE; /* left by an earlier call: not this value's */
    set("7");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 7);
    set("0"); /* below the range */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("101"); /* above it */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("12x"); /* trailing junk */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("many");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    /* strtoul's extras are not decimal unsigneds: a sign (a negative value
     * wraps, and -18446744073709551615 read as 1), leading blanks */
    warns_begin();
    set("-18446744073709551615");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("-0");
    assert_int_equal(pc__env_uint(VAR, 64, 0, 100), 64);
    set("+7");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set(" 7");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("99999999999999999999999"); /* out of unsigned long's range */
    assert_int_equal(pc__env_uint(VAR, 64, 0, 0xffffffffu), 64);
    assert_int_equal(g_warns, 5);
    warns_end();
    set(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(value),  cmocka_unit_test(on_off_switch),
        cmocka_unit_test(choice), cmocka_unit_test(choice_long_list),
        cmocka_unit_test(flag),   cmocka_unit_test(bounded_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
