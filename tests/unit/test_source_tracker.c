/* SPDX-License-Identifier: MIT */
/* Per-source tracker: token bucket on a fake clock, concurrent maximum,
 * source keys, the full-table policies, threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "portcullis.h"
#include "core/thread.h"
#include "filter/addr.h"
#include "filter/source_tracker.h"
#include "xorshift.h"

/* The tracker's clock is in nanoseconds; most tests think in milliseconds. */
#define MS(ms) ((uint64_t)(ms)*1000000ull)

static addr_t A(const char *text)
{
    addr_t a;
    if (addr_parse(text, strlen(text), &a, NULL) != 0) fail_msg("bad address %s", text);
    addr_normalize(&a);
    return a;
}

static tracker_t *make(unsigned max, double rate, unsigned burst, unsigned capacity, int policy)
{
    tracker_config_t c;
    tracker_config_init(&c);
    c.max = max;
    c.rate = rate;
    c.burst = burst;
    c.capacity = capacity;
    c.full_policy = policy;
    tracker_t *t = NULL;
    assert_int_equal(tracker_create(&c, &t), 0);
    return t;
}

/* Acquire at now_ns and immediately release; returns the acquire result. */
static unsigned touch_ns(tracker_t *t, const addr_t *a, uint64_t now_ns)
{
    uint32_t slot;
    unsigned r = tracker_acquire(t, a, now_ns, 0, &slot);
    if (r == 0) {
        assert_int_not_equal(slot, TRACK_NO_SLOT);
        tracker_release(t, slot);
    } else {
        assert_int_equal(slot, TRACK_NO_SLOT);
    }
    return r;
}

/* touch_ns at a time in milliseconds */
static unsigned touch(tracker_t *t, const addr_t *a, uint64_t now_ms)
{
    return touch_ns(t, a, MS(now_ms));
}

static void test_token_bucket(void **state)
{
    (void)state;
    tracker_t *t = make(0, 10.0, 5, 64, TRACKER_FULL_REJECT); /* 10/s, burst 5 */
    addr_t a = A("192.0.2.1");
    for (int i = 0; i < 5; i++)
        assert_int_equal(touch(t, &a, 1000), 0);
    assert_int_equal(touch(t, &a, 1000), TRACK_OVER_RATE);
    /* refused attempts take no token: still one token at 1100 */
    for (int i = 0; i < 10; i++)
        assert_int_equal(touch(t, &a, 1099), TRACK_OVER_RATE);
    assert_int_equal(touch(t, &a, 1100), 0);
    assert_int_equal(touch(t, &a, 1100), TRACK_OVER_RATE);
    assert_int_equal(touch(t, &a, 1250), 0); /* 1.5 tokens refilled: one */
    assert_int_equal(touch(t, &a, 1250), TRACK_OVER_RATE);
    /* a long pause refills up to the burst, not beyond */
    for (int i = 0; i < 5; i++)
        assert_int_equal(touch(t, &a, 60000), 0);
    assert_int_equal(touch(t, &a, 60000), TRACK_OVER_RATE);
    /* another source has its own bucket */
    addr_t b = A("192.0.2.2");
    assert_int_equal(touch(t, &b, 60000), 0);
    tracker_destroy(t);

    /* fractional rate: one per two seconds */
    t = make(0, 0.5, 1, 64, TRACKER_FULL_REJECT);
    assert_int_equal(touch(t, &a, 0), 0);
    assert_int_equal(touch(t, &a, 1999), TRACK_OVER_RATE);
    assert_int_equal(touch(t, &a, 2000), 0);
    tracker_destroy(t);
}

/* Rates above 1000/s with a small burst: the clock is finer than a
 * millisecond, so 5000/s with a burst of 1 lets one connection through every
 * 200 us, five in a millisecond (a clock in milliseconds let one through). */
static void test_token_bucket_fast_rate(void **state)
{
    (void)state;
    tracker_t *t = make(0, 5000.0, 1, 64, TRACKER_FULL_REJECT);
    addr_t a = A("192.0.2.3");
    uint64_t now = MS(7000);
    int passed = 0;
    for (int i = 0; i < 100; i++) { /* 10 ms, an attempt every 100 us */
        if (touch_ns(t, &a, now) == 0) passed++;
        now += 100000;
    }
    assert_int_equal(passed, 50);
    tracker_destroy(t);

    /* a million per second, a burst of 2: of 2000 attempts 100 ns apart
     * (0.2 ms), the burst and then one a microsecond pass */
    t = make(0, 1e6, 2, 64, TRACKER_FULL_REJECT);
    now = MS(9000);
    passed = 0;
    for (int i = 0; i < 2000; i++) {
        if (touch_ns(t, &a, now) == 0) passed++;
        now += 100;
    }
    assert_int_equal(passed, 2 + 199);
    tracker_destroy(t);
}

/* A large window (here 1e6 tokens at one per 1000 s: ~31 700 years) keeps
 * its whole burst: every token is there, and one more is not. */
static void test_token_bucket_long_window(void **state)
{
    (void)state;
    tracker_t *t = make(0, 1e-3, 1000000, 64, TRACKER_FULL_REJECT);
    addr_t a = A("192.0.2.9");
    uint32_t slot;
    for (int i = 0; i < 1000000; i++) {
        unsigned r = tracker_acquire(t, &a, MS(5000), 0, &slot);
        if (r != 0) fail_msg("token %d of 1000000 refused", i + 1);
        tracker_release(t, slot);
    }
    assert_int_equal(touch(t, &a, 5000), TRACK_OVER_RATE);
    assert_int_equal(touch(t, &a, 5000 + 999999), TRACK_OVER_RATE);
    assert_int_equal(touch(t, &a, 5000 + 1000000), 0); /* one refilled after 1000 s */
    tracker_destroy(t);
}

/* A rate above 1e9/s is taken as one token per nanosecond (the clock's
 * step), not refused, and never makes a zero interval. */
static void test_token_bucket_above_ns(void **state)
{
    (void)state;
    tracker_t *t = make(0, 4e9, 3, 64, TRACKER_FULL_REJECT);
    addr_t a = A("192.0.2.4");
    uint64_t now = MS(3000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(touch_ns(t, &a, now), 0);
    assert_int_equal(touch_ns(t, &a, now), TRACK_OVER_RATE);
    assert_int_equal(touch_ns(t, &a, now + 1), 0);
    assert_int_equal(touch_ns(t, &a, now + 1), TRACK_OVER_RATE);
    tracker_destroy(t);
}

static void test_undo_returns_token(void **state)
{
    (void)state;
    tracker_t *t = make(0, 1.0, 1, 64, TRACKER_FULL_REJECT);
    addr_t a = A("198.51.100.7");
    uint32_t s1, s2;
    assert_int_equal(tracker_acquire(t, &a, MS(5000), 0, &s1), 0);
    tracker_undo(t, s1);
    assert_int_equal(tracker_count(t, &a), 0);
    assert_int_equal(tracker_acquire(t, &a, MS(5000), 0, &s2), 0);
    assert_int_equal(s1, s2);
    assert_int_equal(touch(t, &a, 5000), TRACK_OVER_RATE);
    tracker_release(t, s2);
    tracker_destroy(t);
}

static void test_concurrent_max(void **state)
{
    (void)state;
    tracker_t *t = make(3, 0, 0, 1024, TRACKER_FULL_REJECT);
    addr_t a = A("203.0.113.9"), b = A("203.0.113.10");
    uint32_t s[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[i]), 0);
    assert_int_equal(s[0], s[1]);
    assert_int_equal(s[1], s[2]);
    assert_int_equal(tracker_count(t, &a), 3);
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[3]), TRACK_OVER_MAX);
    assert_int_equal(s[3], TRACK_NO_SLOT);
    assert_int_equal(tracker_count(t, &a), 3); /* the refused one is not counted */
    assert_int_equal(touch(t, &b, 0), 0);      /* other sources unaffected */
    tracker_release(t, s[1]);
    assert_int_equal(tracker_count(t, &a), 2);
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[1]), 0);
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[3]), TRACK_OVER_MAX);
    for (int i = 0; i < 3; i++)
        tracker_release(t, s[i]);
    assert_int_equal(tracker_count(t, &a), 0);
    tracker_release(t, TRACK_NO_SLOT); /* no-op */
    tracker_stats_t st;
    tracker_stats(t, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.capacity, 1024);
    tracker_destroy(t);
}

static char last_log[256];
static void capture_log(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    (void)level;
    snprintf(last_log, sizeof last_log, "%s", line);
}

static void test_double_release(void **state)
{
    (void)state;
    tracker_t *t = make(1, 0, 0, 64, TRACKER_FULL_REJECT);
    addr_t a = A("203.0.113.1");
    uint32_t s;
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s), 0);
    tracker_release(t, s);
    pc_log_set_handler(capture_log, NULL);
    tracker_release(t, s); /* a bug in the caller: must not wrap the count */
    pc_log_set_handler(NULL, NULL);
    assert_non_null(strstr(last_log, "release without a matching acquire"));
    assert_int_equal(tracker_count(t, &a), 0);
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s), 0);
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s), TRACK_OVER_MAX);
    tracker_destroy(t);
}

static void test_source_keys(void **state)
{
    (void)state;
    tracker_config_t c;
    tracker_config_init(&c);
    assert_int_equal(c.prefix_v4, 32);
    assert_int_equal(c.prefix_v6, 64);
    c.max = 1;
    c.capacity = 256;
    tracker_t *t;
    assert_int_equal(tracker_create(&c, &t), 0);
    uint32_t s1, s2;
    addr_t a = A("2001:db8::1"), b = A("2001:db8::ffff:1"), d = A("2001:db8:0:1::1");
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s1), 0);
    assert_int_equal(tracker_acquire(t, &b, 0, 0, &s2), TRACK_OVER_MAX); /* same /64 */
    assert_int_equal(tracker_acquire(t, &d, 0, 0, &s2), 0);              /* next /64 */
    tracker_release(t, s2);
    /* IPv4 0.0.0.0 and IPv6 :: are different sources */
    addr_t z4 = A("0.0.0.0"), z6 = A("::");
    uint32_t s3, s4;
    assert_int_equal(tracker_acquire(t, &z4, 0, 0, &s3), 0);
    assert_int_equal(tracker_acquire(t, &z6, 0, 0, &s4), 0);
    assert_int_not_equal(s3, s4);
    /* IPv4-mapped IPv6 (normalised) is the IPv4 source */
    addr_t m = A("::ffff:0.0.0.0");
    assert_int_equal(tracker_acquire(t, &m, 0, 0, &s2), TRACK_OVER_MAX);
    tracker_release(t, s1);
    tracker_release(t, s3);
    tracker_release(t, s4);
    tracker_destroy(t);

    c.prefix_v4 = 24;
    c.prefix_v6 = 128;
    assert_int_equal(tracker_create(&c, &t), 0);
    addr_t e = A("10.1.2.3"), f = A("10.1.2.200"), g = A("10.1.3.1");
    assert_int_equal(tracker_acquire(t, &e, 0, 0, &s1), 0);
    assert_int_equal(tracker_acquire(t, &f, 0, 0, &s2), TRACK_OVER_MAX); /* same /24 */
    assert_int_equal(touch(t, &g, 0), 0);
    assert_int_equal(touch(t, &b, 0), 0); /* /128: a and b now differ */
    assert_int_equal(touch(t, &a, 0), 0);
    tracker_release(t, s1);
    tracker_destroy(t);
}

/* IPv6 source prefixes past /64 mask the low half bit-exactly: /128 tells
 * neighbours apart, /127 pairs them, /65 keys on bit 64 alone. */
static void test_source_keys_v6_low_half(void **state)
{
    (void)state;
    static const struct {
        unsigned len;
        const char *a, *same, *other;
    } cases[] = {
        {128, "2001:db8::2", NULL, "2001:db8::3"},
        {127, "2001:db8::2", "2001:db8::3", "2001:db8::4"},
        {96, "2001:db8::1:0:0", "2001:db8::1:ffff:ffff", "2001:db8::0:ffff:ffff"},
        {65, "2001:db8::", "2001:db8::7fff:ffff:ffff:ffff", "2001:db8::8000:0:0:0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tracker_config_t c;
        tracker_config_init(&c);
        c.max = 1;
        c.capacity = 64;
        c.prefix_v6 = cases[i].len;
        tracker_t *t;
        assert_int_equal(tracker_create(&c, &t), 0);
        addr_t a = A(cases[i].a), o = A(cases[i].other);
        uint32_t s1, s2;
        assert_int_equal(tracker_acquire(t, &a, 0, 0, &s1), 0);
        if (cases[i].same) {
            addr_t m = A(cases[i].same);
            if (tracker_acquire(t, &m, 0, 0, &s2) != TRACK_OVER_MAX)
                fail_msg("/%u: %s not counted with %s", cases[i].len, cases[i].same, cases[i].a);
        }
        if (tracker_acquire(t, &o, 0, 0, &s2) != 0)
            fail_msg("/%u: %s counted with %s", cases[i].len, cases[i].other, cases[i].a);
        tracker_release(t, s2);
        tracker_release(t, s1);
        tracker_destroy(t);
    }
}

/* Prefix length 0 keys a whole family on one source: every IPv4 peer
 * shares one count, every IPv6 peer another. */
static void test_source_keys_prefix_zero(void **state)
{
    (void)state;
    tracker_config_t c;
    tracker_config_init(&c);
    c.max = 1;
    c.capacity = 64;
    c.prefix_v4 = 0;
    c.prefix_v6 = 0;
    tracker_t *t;
    assert_int_equal(tracker_create(&c, &t), 0);
    addr_t a = A("10.0.0.1"), b = A("192.0.2.1"), d = A("2001:db8::1"), e = A("fe80::1");
    uint32_t s1, s2, s3;
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s1), 0);
    assert_int_equal(tracker_acquire(t, &b, 0, 0, &s3), TRACK_OVER_MAX);
    assert_int_equal(tracker_acquire(t, &d, 0, 0, &s2), 0);
    assert_int_equal(tracker_acquire(t, &e, 0, 0, &s3), TRACK_OVER_MAX);
    assert_int_equal(tracker_count(t, &b), 1);
    assert_int_equal(tracker_count(t, &e), 1);
    tracker_release(t, s1);
    tracker_release(t, s2);
    tracker_destroy(t);
}

/* tracker_each_at: the sources at or above a count, as masked keys. */
typedef struct seen_s {
    int n;
    char text[8][PC_ADDR_STRLEN];
} seen_t;

static void seen_add(void *arg, const addr_t *key)
{
    seen_t *s = arg;
    if (s->n < 8) addr_format(key, s->text[s->n], sizeof s->text[0]);
    s->n++;
}

static int seen_has(const seen_t *s, const char *text)
{
    for (int i = 0; i < s->n && i < 8; i++)
        if (strcmp(s->text[i], text) == 0) return 1;
    return 0;
}

static void test_each_at(void **state)
{
    (void)state;
    tracker_config_t c;
    tracker_config_init(&c);
    c.max = 3;
    c.capacity = 256;
    c.prefix_v4 = 24;
    tracker_t *t;
    assert_int_equal(tracker_create(&c, &t), 0);
    uint32_t s[8];
    addr_t a = A("10.1.2.3"), b = A("10.1.2.99"), d = A("10.9.9.9"), v6 = A("2001:db8::7");
    assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[0]), 0);
    assert_int_equal(tracker_acquire(t, &b, 0, 0, &s[1]), 0); /* the same /24: 2 */
    assert_int_equal(tracker_acquire(t, &d, 0, 0, &s[2]), 0); /* 1 */
    for (int i = 3; i < 6; i++)                               /* the /64: 3 */
        assert_int_equal(tracker_acquire(t, &v6, 0, 0, &s[i]), 0);
    seen_t at2 = {0}, at3 = {0}, at1 = {0};
    tracker_each_at(t, 2, seen_add, &at2);
    assert_int_equal(at2.n, 2);
    assert_true(seen_has(&at2, "10.1.2.0"));
    assert_true(seen_has(&at2, "2001:db8::"));
    tracker_each_at(t, 3, seen_add, &at3);
    assert_int_equal(at3.n, 1);
    assert_true(seen_has(&at3, "2001:db8::"));
    tracker_release(t, s[0]);
    tracker_release(t, s[1]);
    tracker_each_at(t, 1, seen_add, &at1); /* 10.1.2.0 idle: kept slot, count 0 */
    assert_int_equal(at1.n, 2);
    assert_false(seen_has(&at1, "10.1.2.0"));
    for (int i = 2; i < 6; i++)
        tracker_release(t, s[i]);
    tracker_destroy(t);
}

static void test_shadow(void **state)
{
    (void)state;
    tracker_t *t = make(1, 1.0, 1, 64, TRACKER_FULL_REJECT);
    addr_t a = A("192.0.2.50");
    uint32_t s1, s2, s3;
    assert_int_equal(tracker_acquire(t, &a, 0, 1, &s1), 0);
    /* over both: reported, still counted (the connection is accepted) */
    assert_int_equal(tracker_acquire(t, &a, 0, 1, &s2), TRACK_OVER_MAX | TRACK_OVER_RATE);
    assert_int_not_equal(s2, TRACK_NO_SLOT);
    assert_int_equal(tracker_count(t, &a), 2);
    tracker_release(t, s1);
    tracker_release(t, s2);
    /* the failed rate check took no token: one is back after 1 s */
    assert_int_equal(tracker_acquire(t, &a, MS(1000), 1, &s3), 0);
    tracker_release(t, s3);
    tracker_destroy(t);
}

/* Capacity 16 = one probe window: the 17th concurrent source finds no slot. */
static void test_full_reject(void **state)
{
    (void)state;
    tracker_t *t = make(100, 1.0, 1, 16, TRACKER_FULL_REJECT);
    uint32_t s[17];
    char text[32];
    for (int i = 0; i < 16; i++) {
        snprintf(text, sizeof text, "10.0.0.%d", i);
        addr_t a = A(text);
        assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[i]), 0);
    }
    addr_t n = A("10.0.1.1");
    assert_int_equal(tracker_acquire(t, &n, 0, 0, &s[16]), TRACK_FULL);
    assert_int_equal(s[16], TRACK_NO_SLOT);
    tracker_stats_t st;
    tracker_stats(t, &st);
    assert_int_equal(st.full_events, 1);
    assert_int_equal(st.used, 16);
    assert_int_equal(st.active, 16);
    /* a closed source's slot is reusable only once its bucket is full again */
    tracker_release(t, s[3]);
    assert_int_equal(tracker_acquire(t, &n, MS(500), 0, &s[16]), TRACK_FULL);
    assert_int_equal(tracker_acquire(t, &n, MS(1000), 0, &s[16]), 0);
    assert_int_equal(s[16], s[3]);
    assert_int_equal(tracker_count(t, &n), 1);
    addr_t old = A("10.0.0.3"); /* its slot went to n: it is a new source now */
    assert_int_equal(tracker_count(t, &old), 0);
    tracker_stats(t, &st);
    assert_int_equal(st.full_events, 2);
    for (int i = 0; i < 17; i++)
        if (i != 3) tracker_release(t, s[i]);
    tracker_stats(t, &st);
    assert_int_equal(st.active, 0);
    tracker_destroy(t);
}

static void test_full_shared(void **state)
{
    (void)state;
    tracker_t *t = make(2, 0, 0, 16, TRACKER_FULL_SHARED);
    uint32_t s[16], o1, o2, o3;
    char text[32];
    for (int i = 0; i < 16; i++) {
        snprintf(text, sizeof text, "10.0.0.%d", i);
        addr_t a = A(text);
        assert_int_equal(tracker_acquire(t, &a, 0, 0, &s[i]), 0);
    }
    /* new sources share one overflow entry with the per-source limit */
    addr_t x = A("10.9.0.1"), y = A("10.9.0.2"), z = A("2001:db8::1");
    assert_int_equal(tracker_acquire(t, &x, 0, 0, &o1), 0);
    assert_int_equal(tracker_acquire(t, &y, 0, 0, &o2), 0);
    assert_int_equal(o1, o2);
    assert_int_equal(tracker_overflow_count(t), 2);
    assert_int_equal(tracker_acquire(t, &z, 0, 0, &o3), TRACK_OVER_MAX);
    tracker_release(t, o1);
    assert_int_equal(tracker_acquire(t, &z, 0, 0, &o3), 0);
    tracker_stats_t st;
    tracker_stats(t, &st);
    assert_int_equal(st.full_events, 4);
    assert_int_equal(st.active, 17);
    tracker_release(t, o2);
    tracker_release(t, o3);
    assert_int_equal(tracker_overflow_count(t), 0);
    /* once a slot frees, a new source gets its own again */
    tracker_release(t, s[0]);
    assert_int_equal(tracker_acquire(t, &x, 0, 0, &o1), 0);
    assert_int_not_equal(o1, o2);
    assert_int_equal(tracker_count(t, &x), 1);
    tracker_release(t, o1);
    for (int i = 1; i < 16; i++)
        tracker_release(t, s[i]);
    tracker_destroy(t);
}

static void test_config_invalid(void **state)
{
    (void)state;
    tracker_config_t c;
    tracker_t *t;
    tracker_config_init(&c);
    c.prefix_v4 = 33;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    tracker_config_init(&c);
    c.prefix_v6 = 129;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    tracker_config_init(&c);
    c.rate = 5;
    c.burst = 0;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    c.rate = -1;
    c.burst = 1;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    c.rate = NAN;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    /* slower than one token per ~11.6 days: refused, not raised */
    c.rate = 0.9e-6;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    /* a window (burst - 1 intervals) past 2^62 ns: refused, where it used to
     * wrap and cut the burst short (20000 at 1e-6/s gave 1553) */
    c.rate = 1e-6;
    c.burst = 20000;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    c.burst = 4612; /* 4611 x 1e15 ns: just under 2^62 */
    assert_int_equal(tracker_create(&c, &t), 0);
    tracker_destroy(t);
    c.burst = 4613;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    tracker_config_init(&c);
    c.full_policy = 7;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    /* refused before anything is sized or allocated for it */
    tracker_config_init(&c);
    c.capacity = TRACKER_CAPACITY_MAX + 1;
    assert_int_equal(tracker_create(&c, &t), PC_EINVAL);
    tracker_config_init(&c);
    c.capacity = 5; /* rounded up to one window */
    assert_int_equal(tracker_create(&c, &t), 0);
    tracker_stats_t st;
    tracker_stats(t, &st);
    assert_int_equal(st.capacity, 16);
    tracker_destroy(t);
}

/* ---- threads -------------------------------------------------------------- */

#define NTHREADS 4
#define NKEYS    200

typedef struct shared_s {
    tracker_t *t;
    atomic_int ready;
    atomic_int held[NKEYS]; /* connections the test believes are open */
    atomic_int violations;
    uint32_t slots[NTHREADS][NKEYS];
    int id;
} shared_t;

static shared_t sh;
static atomic_int next_id;

static addr_t key_addr(int k)
{
    addr_t a;
    addr_set_v4(&a, 0xc6336400u + (uint32_t)k); /* 198.51.100.k... */
    return a;
}

/* Every thread inserts the same new sources at the same moment and keeps
 * them: each source must end up in one slot counting all threads. */
static void insert_race(void *arg)
{
    (void)arg;
    int id = atomic_fetch_add(&next_id, 1);
    atomic_fetch_add(&sh.ready, 1);
    while (atomic_load(&sh.ready) < NTHREADS) {
    }
    for (int k = 0; k < NKEYS; k++) {
        addr_t a = key_addr(k);
        if (tracker_acquire(sh.t, &a, 0, 0, &sh.slots[id][k]) != 0)
            atomic_fetch_add(&sh.violations, 1);
    }
}

/* Threads hammer a few sources with max 3 and check the limit is never
 * exceeded and the counts return to zero. */
static void max_race(void *arg)
{
    (void)arg;
    uint64_t x = (uint64_t)atomic_fetch_add(&next_id, 1) * 7919 + 1;
    for (int i = 0; i < 20000; i++) {
        xorshift64(&x);
        int k = (int)(x % 5);
        addr_t a = key_addr(k);
        uint32_t slot;
        if (tracker_acquire(sh.t, &a, 0, 0, &slot) == 0) {
            if (atomic_fetch_add(&sh.held[k], 1) + 1 > 3) atomic_fetch_add(&sh.violations, 1);
            atomic_fetch_sub(&sh.held[k], 1);
            tracker_release(sh.t, slot);
        }
    }
}

static void run_threads(pc_thread_fn fn)
{
    pc_thread_t th[NTHREADS];
    atomic_store(&next_id, 0);
    atomic_store(&sh.ready, 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pc__thread_start(&th[i], fn, NULL, "t"), 0);
    for (int i = 0; i < NTHREADS; i++)
        pc__thread_join(th[i]);
}

static void test_threads(void **state)
{
    (void)state;
    memset(&sh, 0, sizeof sh);
    sh.t = make(1000, 0, 0, 4096, TRACKER_FULL_REJECT);
    run_threads(insert_race);
    assert_int_equal(atomic_load(&sh.violations), 0);
    tracker_stats_t st;
    tracker_stats(sh.t, &st);
    assert_int_equal(st.used, NKEYS);
    for (int k = 0; k < NKEYS; k++) {
        addr_t a = key_addr(k);
        assert_int_equal(tracker_count(sh.t, &a), NTHREADS);
    }
    /* released from another thread than the one that acquired */
    for (int id = 0; id < NTHREADS; id++)
        for (int k = 0; k < NKEYS; k++)
            tracker_release(sh.t, sh.slots[(id + 1) % NTHREADS][k]);
    tracker_stats(sh.t, &st);
    assert_int_equal(st.active, 0);
    tracker_destroy(sh.t);

    memset(&sh, 0, sizeof sh);
    sh.t = make(3, 0, 0, 64, TRACKER_FULL_REJECT);
    run_threads(max_race);
    assert_int_equal(atomic_load(&sh.violations), 0);
    tracker_stats(sh.t, &st);
    assert_int_equal(st.active, 0);
    tracker_destroy(sh.t);
}

/* Threads churn 300 sources through a 64-slot table (slots reused for new
 * sources, the overflow entry shared, max and rate refusals, undo), each
 * keeping some connections open and releasing them from another thread; at
 * each pause the running counts equal a scan of the table. */
#define CHURN_HOLD 24
static uint32_t churn_held[NTHREADS][CHURN_HOLD];

static void churn(void *arg)
{
    (void)arg;
    int id = atomic_fetch_add(&next_id, 1);
    uint64_t x = (uint64_t)id * 104729 + 17;
    for (int i = 0; i < 30000; i++) {
        xorshift64(&x);
        addr_t a = key_addr((int)(x % 300));
        uint32_t slot;
        unsigned r = tracker_acquire(sh.t, &a, MS((uint64_t)i / 16), (x >> 40) % 7 == 0, &slot);
        if (slot == TRACK_NO_SLOT) continue;
        if ((x >> 20) % 5 == 0 && r == 0)
            tracker_undo(sh.t, slot);
        else if (i >= 30000 - CHURN_HOLD)
            churn_held[id][i - (30000 - CHURN_HOLD)] = slot; /* kept open */
        else
            tracker_release(sh.t, slot);
    }
}

static void check_counts(tracker_t *t, size_t want_active_min)
{
    tracker_stats_t run, scan;
    tracker_stats(t, &run);
    tracker_scan(t, &scan);
    assert_int_equal(run.used, scan.used);
    assert_int_equal(run.active, scan.active);
    assert_int_equal(run.full_events, scan.full_events);
    assert_true(run.active >= want_active_min);
}

static void test_running_counts(void **state)
{
    (void)state;
    memset(&sh, 0, sizeof sh);
    memset(churn_held, 0xff, sizeof churn_held); /* TRACK_NO_SLOT */
    sh.t = make(4, 2000, 8, 64, TRACKER_FULL_SHARED);
    run_threads(churn);
    check_counts(sh.t, 1);
    tracker_stats_t st;
    tracker_stats(sh.t, &st);
    assert_true(st.full_events > 0); /* the overflow entry was used */
    assert_int_equal(st.used, 64);   /* every slot was taken at some point */
    /* released by other threads than the ones that acquired */
    for (int id = 0; id < NTHREADS; id++)
        for (int k = 0; k < CHURN_HOLD; k++)
            tracker_release(sh.t, churn_held[(id + 1) % NTHREADS][k]);
    check_counts(sh.t, 0);
    tracker_stats(sh.t, &st);
    assert_int_equal(st.active, 0);
    tracker_destroy(sh.t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_token_bucket_fast_rate),
        cmocka_unit_test(test_token_bucket_long_window),
        cmocka_unit_test(test_token_bucket_above_ns),
        cmocka_unit_test(test_undo_returns_token),
        cmocka_unit_test(test_concurrent_max),
        cmocka_unit_test(test_double_release),
        cmocka_unit_test(test_source_keys),
        cmocka_unit_test(test_source_keys_v6_low_half),
        cmocka_unit_test(test_source_keys_prefix_zero),
        cmocka_unit_test(test_each_at),
        cmocka_unit_test(test_shadow),
        cmocka_unit_test(test_full_reject),
        cmocka_unit_test(test_full_shared),
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_running_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
