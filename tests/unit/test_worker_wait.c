/* SPDX-License-Identifier: MIT */
/* A worker's wait for completions (worker_wait_ms): the sooner of its two
 * wheels' deadlines, woken a little early. A deadline INT_MAX ms or more
 * away (wheel_timeout's cap: a timer or timeout ~25 days or more ahead)
 * must stay a long positive wait: it used to overflow into a negative one,
 * which every backend takes as "no deadline", so a quiet worker slept
 * through the timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>

#include <cmocka.h>

#include "iocp/server.h"

static void sooner_of_the_two(void **state)
{
    (void)state;
    assert_int_equal(worker_wait_ms(-1, -1), -1);
    assert_int_equal(worker_wait_ms(0, -1), 0);
    assert_int_equal(worker_wait_ms(-1, 0), 0);
    assert_int_equal(worker_wait_ms(50, 80), 50);
    assert_int_equal(worker_wait_ms(80, 50), 50);
    assert_int_equal(worker_wait_ms(200, -1), 200); /* short waits are not cut */
    assert_int_equal(worker_wait_ms(201, -1), 199);
    assert_int_equal(worker_wait_ms(1000, -1), 995);
}

static void far_deadline_stays_positive(void **state)
{
    (void)state;
    int w = worker_wait_ms(INT_MAX, -1);
    assert_true(w > INT_MAX / 2);
    assert_int_equal(worker_wait_ms(-1, INT_MAX), w);
    assert_int_equal(worker_wait_ms(INT_MAX, INT_MAX), w);
    assert_true(worker_wait_ms(INT_MAX - 1, -1) > INT_MAX / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sooner_of_the_two),
        cmocka_unit_test(far_deadline_stays_positive),
    };
    return cmocka_run_group_tests_name("worker_wait", tests, NULL, NULL);
}
