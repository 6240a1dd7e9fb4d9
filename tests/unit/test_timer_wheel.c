/* SPDX-License-Identifier: MIT */
/* Timer wheel: timers fire at the first tick at or after their expiry,
 * never before; removal works; long timers survive whole revolutions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/timer_wheel.h"

static unsigned run(timer_wheel_t *w, uint64_t now, queue_t *out)
{
    queue_init(out);
    return wheel_expire(w, now, out);
}

static void fires_on_time_not_before(void **state)
{
    (void)state;
    for (uint64_t start = 1000000; start < 1000010; start++) {
        for (uint64_t delay = 1; delay < 40; delay += 3) {
            timer_wheel_t w;
            wheel_init(&w, start);
            wheel_timer_t t;
            wheel_timer_init(&t);
            wheel_add(&w, &t, start + delay);
            uint64_t fired = 0;
            for (uint64_t now = start; now < start + delay + 50; now++) {
                queue_t out;
                if (run(&w, now, &out)) {
                    fired = now;
                    break;
                }
            }
            assert_true(fired >= start + delay);
            assert_true(fired < start + delay + PC_WHEEL_TICK_MS);
            assert_int_equal(w.count, 0); /* handed over in the expired list */
        }
    }
}

static void coarse_polling_still_fires(void **state)
{
    (void)state;
    timer_wheel_t w;
    wheel_init(&w, 0);
    wheel_timer_t t[100];
    for (int i = 0; i < 100; i++) {
        wheel_timer_init(&t[i]);
        wheel_add(&w, &t[i], 100 + (uint64_t)i * 97);
    }
    unsigned total = 0;
    for (uint64_t now = 0; now < 20000; now += 37) {
        queue_t out;
        total += run(&w, now, &out);
        queue_t *e;
        queue_foreach(e, &out)
        {
            wheel_timer_t *tm = pc_container_of(e, wheel_timer_t, link);
            assert_true(tm->expire_ms <= now);
        }
    }
    assert_int_equal(total, 100);
}

static void long_timer_survives_revolutions(void **state)
{
    (void)state;
    timer_wheel_t w;
    wheel_init(&w, 0);
    wheel_timer_t t;
    wheel_timer_init(&t);
    uint64_t at = 3 * PC_WHEEL_SLOTS * PC_WHEEL_TICK_MS + 5;
    wheel_add(&w, &t, at);
    for (uint64_t now = 0; now < at; now += 10) {
        queue_t out;
        assert_int_equal(run(&w, now, &out), 0);
    }
    queue_t out;
    assert_int_equal(run(&w, at + 10, &out), 1);
}

static void delete_and_rearm(void **state)
{
    (void)state;
    timer_wheel_t w;
    wheel_init(&w, 0);
    wheel_timer_t t;
    wheel_timer_init(&t);
    wheel_add(&w, &t, 50);
    assert_true(wheel_armed(&t));
    assert_int_equal(wheel_timeout(&w, 0), 0); /* tick 0 not yet processed */
    queue_t out0;
    assert_int_equal(run(&w, 0, &out0), 0);
    assert_int_equal(wheel_timeout(&w, 0), 10); /* next boundary */
    wheel_del(&w, &t);
    assert_false(wheel_armed(&t));
    assert_int_equal(wheel_timeout(&w, 0), -1);
    queue_t out;
    assert_int_equal(run(&w, 100, &out), 0);
    wheel_add(&w, &t, 300);
    wheel_add(&w, &t, 500); /* re-arm moves it */
    assert_int_equal(w.count, 1);
    assert_int_equal(run(&w, 400, &out), 0);
    assert_int_equal(run(&w, 500, &out), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_on_time_not_before),
        cmocka_unit_test(coarse_polling_still_fires),
        cmocka_unit_test(long_timer_survives_revolutions),
        cmocka_unit_test(delete_and_rearm),
    };
    return cmocka_run_group_tests_name("timer_wheel", tests, NULL, NULL);
}
