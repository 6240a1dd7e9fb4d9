/* SPDX-License-Identifier: MIT */
/* Environment-variable knobs: the one parser (core/env.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/env.h"

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
    set("yes");
    assert_int_equal(pc__env_switch(VAR), -1);
    set("2");
    assert_int_equal(pc__env_switch(VAR), -1);
    set(NULL);
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
    set("0"); /* below the range */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("101"); /* above it */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("12x"); /* trailing junk */
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set("many");
    assert_int_equal(pc__env_uint(VAR, 64, 1, 100), 64);
    set(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(value),
        cmocka_unit_test(on_off_switch),
        cmocka_unit_test(flag),
        cmocka_unit_test(bounded_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
