/* SPDX-License-Identifier: MIT */
/* Timer wheel: timers fire at the first tick at or after their expiry,
 * never before; removal works; long timers survive whole revolutions; the
 * wait the wheel asks for (wheel_timeout) ends no later than the first
 * expiry, and not every tick while nothing is due. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/timer_wheel.h"
#include "xorshift.h"

#define TICK PC_WHEEL_TICK_MS

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
    assert_int_equal(wheel_timeout(&w, 0), 50); /* its tick (tick 0 has nothing) */
    queue_t out0;
    assert_int_equal(run(&w, 0, &out0), 0);
    assert_int_equal(wheel_timeout(&w, 0), 50); /* its tick, not the next one */
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

/* The first tick boundary at or after ms. */
static uint64_t tick_up(uint64_t ms)
{
    return (ms + TICK - 1) / TICK * TICK;
}

/* A worker with one armed timer ten minutes out: it waited 10 ms at a time
 * (a wake-up every tick for nothing). Driven by wheel_timeout alone, it
 * wakes once, at the timer's tick, and runs it. */
static void far_timer_waits_long(void **state)
{
    (void)state;
    const uint64_t start = 1000003, delay = 600000;
    timer_wheel_t w;
    wheel_init(&w, start);
    wheel_timer_t t;
    wheel_timer_init(&t);
    wheel_add(&w, &t, start + delay);
    int to = wheel_timeout(&w, start);
    assert_int_equal(to, tick_up(start + delay) - start);
    uint64_t now = start;
    unsigned wakes = 0, fired = 0;
    while (!fired) {
        to = wheel_timeout(&w, now);
        assert_true(to >= 0);
        assert_true(now + (uint64_t)to <= tick_up(start + delay));
        now += (uint64_t)to;
        wakes++;
        assert_true(wakes <= 1);
        queue_t out;
        fired = run(&w, now, &out);
    }
    assert_int_equal(now, tick_up(start + delay));
    assert_int_equal(wheel_timeout(&w, now), -1);
}

/* Timers in different slots: the wait is exactly to the tick of the
 * earliest, before and after expiries and removals. */
static void timeout_is_the_earliest_tick(void **state)
{
    (void)state;
    const uint64_t start = 2000000;
    const uint64_t delays[] = {4000, 25, 333, 5110, 1, 12345};
    enum { N = sizeof delays / sizeof delays[0] };
    timer_wheel_t w;
    wheel_init(&w, start);
    assert_int_equal(wheel_timeout(&w, start), -1);
    wheel_timer_t t[N];
    for (int i = 0; i < N; i++) {
        wheel_timer_init(&t[i]);
        wheel_add(&w, &t[i], start + delays[i]);
    }
    /* start's own tick is not processed yet: the 1 ms timer's is the next */
    assert_int_equal(wheel_timeout(&w, start), 10);
    assert_int_equal(wheel_timeout(&w, start + 7), 3);
    wheel_del(&w, &t[4]); /* the 1 ms one */
    assert_int_equal(wheel_timeout(&w, start), 30);
    queue_t out;
    assert_int_equal(run(&w, start + 29, &out), 0);
    assert_int_equal(wheel_timeout(&w, start + 29), 1);
    assert_int_equal(run(&w, start + 30, &out), 1); /* the 25 ms one */
    assert_int_equal(wheel_timeout(&w, start + 30), 340 - 30);
    assert_int_equal(run(&w, start + 340, &out), 1); /* 333 */
    assert_int_equal(wheel_timeout(&w, start + 340), 4000 - 340);
    wheel_del(&w, &t[0]);                                         /* 4000 */
    assert_int_equal(wheel_timeout(&w, start + 340), 5110 - 340); /* exact: within the span */
    assert_int_equal(run(&w, start + 5110, &out), 1);
    /* 12345: beyond a revolution when added (the far list) */
    assert_int_equal(wheel_timeout(&w, start + 5110), 12350 - 5110);
    assert_int_equal(run(&w, start + 12349, &out), 0);
    assert_int_equal(wheel_timeout(&w, start + 12349), 1);
    assert_int_equal(run(&w, start + 12350, &out), 1);
    assert_int_equal(wheel_timeout(&w, start + 12350), -1);
    assert_int_equal(w.count, 0);
}

/* Due already: no wait. Weeks away: a wait that fits an int. */
static void timeout_due_and_distant(void **state)
{
    (void)state;
    timer_wheel_t w;
    wheel_init(&w, 500000);
    wheel_timer_t a, b;
    wheel_timer_init(&a);
    wheel_timer_init(&b);
    wheel_add(&w, &b, 500000 + 60ull * 24 * 3600 * 1000); /* 60 days */
    int to = wheel_timeout(&w, 500000);
    assert_int_equal(to, INT_MAX);
    wheel_add(&w, &a, 499000); /* in the past */
    assert_int_equal(wheel_timeout(&w, 500000), 0);
    queue_t out;
    assert_int_equal(run(&w, 500000, &out), 1);
    assert_ptr_equal(queue_head(&out), &a.link);
    queue_remove(&a.link); /* the caller takes what expired */
    assert_int_equal(wheel_timeout(&w, 500000), INT_MAX);
    /* a clock far past every deadline (a stall): both due at once */
    wheel_add(&w, &a, 500000 + 7 * PC_WHEEL_SLOTS * TICK);
    assert_int_equal(run(&w, 500000 + 61ull * 24 * 3600 * 1000, &out), 2);
    assert_int_equal(wheel_timeout(&w, 500000), -1);
}

/* Randomised against a model: timers of every length are added, moved and
 * removed while a clock advances, either to the end of the wait the wheel
 * asked for (as a worker does) or by some other step. The model's tick for
 * each timer: the first tick boundary at or after its expiry, or the first
 * tick not yet processed when it was added if that is later. The wait never
 * ends after the earliest of these; no timer runs before its expiry; none
 * is left armed once its tick has been processed. */
static void random_against_model(void **state)
{
    (void)state;
    enum { N = 300 };
    static wheel_timer_t t[N];
    static uint64_t fire[N]; /* the model's tick (ms) of each armed timer */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 40; round++) {
        uint64_t now = 1000000 + xorshift64(&rng) % 100000000;
        timer_wheel_t w;
        wheel_init(&w, now);
        uint64_t next = now / TICK * TICK; /* the first tick not processed */
        for (int i = 0; i < N; i++)
            wheel_timer_init(&t[i]);
        for (int step = 0; step < 20000; step++) {
            uint64_t r = xorshift64(&rng);
            int i = (int)(r % N);
            unsigned op = (unsigned)(r >> 20) % 10;
            if (op < 4) {
                uint64_t d, v = xorshift64(&rng);
                switch (v % 6) {
                case 0:
                    d = 0;
                    break;
                case 1:
                    d = v % 25;
                    break;
                case 2:
                    d = v % (PC_WHEEL_SLOTS * TICK);
                    break;
                case 3:
                    d = PC_WHEEL_SLOTS * TICK - 30 + v % 60;
                    break;
                case 4:
                    d = v % 40000;
                    break;
                default:
                    d = v % 700000;
                    break;
                }
                int past = (v >> 40) % 8 == 0;
                uint64_t at = past ? (now > d ? now - d : 0) : now + d;
                wheel_add(&w, &t[i], at);
                fire[i] = tick_up(at) > next ? tick_up(at) : next;
            } else if (op < 5) {
                wheel_del(&w, &t[i]);
            } else {
                uint64_t by = UINT64_MAX;
                unsigned armed = 0;
                for (int k = 0; k < N; k++) {
                    if (!wheel_armed(&t[k])) continue;
                    armed++;
                    if (fire[k] < by) by = fire[k];
                }
                assert_int_equal(armed, w.count);
                int to = wheel_timeout(&w, now);
                if (!armed)
                    assert_int_equal(to, -1);
                else
                    assert_true(to >= 0 && now + (uint64_t)to <= (by > now ? by : now));
                uint64_t v = xorshift64(&rng);
                if (to >= 0 && v % 2)
                    now += (uint64_t)to; /* as a worker does */
                else
                    now += v % 4 == 0 ? (v >> 8) % 100000 : (v >> 8) % 100;
                queue_t out;
                run(&w, now, &out);
                if (now / TICK * TICK >= next) next = now / TICK * TICK + TICK;
                while (!queue_empty(&out)) {
                    queue_t *e = queue_head(&out);
                    queue_remove(e);
                    assert_true(pc_container_of(e, wheel_timer_t, link)->expire_ms <= now);
                }
                for (int k = 0; k < N; k++)
                    if (wheel_armed(&t[k])) assert_true(fire[k] >= next);
            }
        }
    }
}

/* Many timers due in 60-70 s, spread over every slot of the wheel: the
 * worker wakes for their ticks only, not at each slot they would share a
 * revolution or more earlier. Then some are removed: the next scan of the
 * far list may come early, once per revolution at most. */
static void many_far_timers_no_idle_wakes(void **state)
{
    (void)state;
    enum { N = 1000 };
    static wheel_timer_t t[N];
    for (int removing = 0; removing < 2; removing++) {
        const uint64_t start = 3000000;
        timer_wheel_t w;
        wheel_init(&w, start);
        unsigned armed = 0;
        for (int i = 0; i < N; i++) {
            wheel_timer_init(&t[i]);
            wheel_add(&w, &t[i], start + 60000 + (uint64_t)i * 10 + (uint64_t)i % 7);
        }
        for (int i = 0; i < N; i++)
            if (removing && i % 3 == 0) wheel_del(&w, &t[i]); /* the earliest too */
        for (int i = 0; i < N; i++)
            armed += wheel_armed(&t[i]) ? 1u : 0u;
        uint64_t now = start;
        unsigned idle_wakes = 0, fired = 0;
        while (fired < armed) {
            int to = wheel_timeout(&w, now);
            assert_true(to >= 0);
            now += (uint64_t)to;
            queue_t out;
            unsigned n = run(&w, now, &out);
            queue_t *e;
            queue_foreach(e, &out)
            {
                wheel_timer_t *tm = pc_container_of(e, wheel_timer_t, link);
                assert_true(tm->expire_ms <= now && now < tm->expire_ms + TICK);
            }
            if (!n) idle_wakes++;
            fired += n;
        }
        assert_int_equal(wheel_timeout(&w, now), -1);
        if (!removing)
            assert_int_equal(idle_wakes, 0);
        else
            assert_true(idle_wakes <= 10000 / (PC_WHEEL_SLOTS * TICK) + 2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_on_time_not_before),
        cmocka_unit_test(coarse_polling_still_fires),
        cmocka_unit_test(long_timer_survives_revolutions),
        cmocka_unit_test(delete_and_rearm),
        cmocka_unit_test(far_timer_waits_long),
        cmocka_unit_test(timeout_is_the_earliest_tick),
        cmocka_unit_test(timeout_due_and_distant),
        cmocka_unit_test(many_far_timers_no_idle_wakes),
        cmocka_unit_test(random_against_model),
    };
    return cmocka_run_group_tests_name("timer_wheel", tests, NULL, NULL);
}
