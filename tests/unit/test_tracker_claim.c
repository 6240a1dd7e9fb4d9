/* SPDX-License-Identifier: MIT */
/* The source tracker's insert claim, with other threads run at the two points
 * around it (the hooks in src/filter/source_tracker.c, included here):
 *
 *   B  inserts a new source K2 and picks K's idle slot X as its candidate;
 *   C  (before B's claim) acquires K: finds X, counts 1;
 *   B  claims X (CLAIMING for K2), then finds it busy and will put it back;
 *   A  (after B's claim, on a thread of its own) acquires K.
 *
 * A must not count K absent while X is claimed: K would get a second slot and
 * per_source_max = 1 would admit A next to C. A waits for the claim to settle,
 * then finds K in X with C's connection and is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <string.h>
#include <cmocka.h>

struct tracker_s;
static void hook_before(struct tracker_s *t, uint32_t idx);
static void hook_after(struct tracker_s *t, uint32_t idx);
#define TRACKER_HOOK_BEFORE_CLAIM(t, idx) hook_before((t), (idx))
#define TRACKER_HOOK_AFTER_CLAIM(t, idx)  hook_after((t), (idx))
#include "filter/source_tracker.c"

#include "filter/addr.h"

static addr_t g_k;
static int g_phase; /* 1: B's insert is under way; 2: C ran; 3: A started */
static uint32_t g_slot_c = TRACK_NO_SLOT, g_slot_a = TRACK_NO_SLOT;
static unsigned g_res_c = 99;
static atomic_uint g_res_a = 99;
static atomic_int g_a_done;
static int g_a_done_at_claim = -1;
static pc_thread_t g_thread_a;

static addr_t v4(int c, int d)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    a.family = 4;
    a.b[0] = 192;
    a.b[1] = 0;
    a.b[2] = (uint8_t)c;
    a.b[3] = (uint8_t)d;
    return a;
}

static void thread_a(void *arg)
{
    tracker_t *t = arg;
    atomic_store(&g_res_a, tracker_acquire(t, &g_k, 1000, 0, &g_slot_a));
    atomic_store(&g_a_done, 1);
}

static void hook_before(struct tracker_s *t, uint32_t idx)
{
    (void)idx;
    if (g_phase != 1) return;
    g_phase = 2;
    g_res_c = tracker_acquire(t, &g_k, 1000, 0, &g_slot_c); /* C, inline */
}

static void hook_after(struct tracker_s *t, uint32_t idx)
{
    (void)idx;
    if (g_phase != 2) return;
    g_phase = 3;
    assert_int_equal(pc__thread_start(&g_thread_a, thread_a, t, "A"), 0);
    pc__sleep_ms(200); /* B stays preempted inside its claim meanwhile */
    g_a_done_at_claim = atomic_load(&g_a_done);
}

static void lookup_waits_on_a_claim_of_its_slot(void **state)
{
    (void)state;
    tracker_config_t c;
    tracker_config_init(&c);
    c.max = 1;
    c.capacity = 16; /* one window: the whole table */
    tracker_t *t;
    assert_int_equal(tracker_create(&c, &t), 0);
    g_k = v4(2, 1);
    /* K takes slot X, busy sources take every other slot, then K's
     * connection closes: X is idle, reusable by a new source */
    uint32_t x, s;
    assert_int_equal(tracker_acquire(t, &g_k, 1000, 0, &x), 0);
    uint32_t busy[16];
    int nbusy = 0;
    for (int d = 1; d < 250; d++) {
        addr_t o = v4(3, d);
        assert_int_equal(tracker_acquire(t, &o, 1000, 0, &s), 0);
        if (s == t->capacity) { /* the table is full: the overflow entry */
            tracker_release(t, s);
            break;
        }
        busy[nbusy++] = s;
    }
    assert_int_equal(nbusy, 15);
    tracker_release(t, x);
    /* a new source K2 whose window reaches X before some busy slot F; F is
     * freed, so B picks X and, once X proves busy, F */
    addr_t k2;
    uint32_t f = TRACK_NO_SLOT;
    for (int d = 1; d < 250 && f == TRACK_NO_SLOT; d++) {
        k2 = v4(9, d);
        src_key_t kk2;
        make_key(t, &k2, &kk2);
        uint32_t off_x = (x - kk2.pos) & t->mask;
        for (int i = 0; i < nbusy; i++)
            if (((busy[i] - kk2.pos) & t->mask) > off_x) {
                f = busy[i];
                break;
            }
    }
    assert_int_not_equal(f, TRACK_NO_SLOT);
    tracker_release(t, f);

    g_phase = 1;
    uint32_t slot_b;
    assert_int_equal(tracker_acquire(t, &k2, 1000, 0, &slot_b), 0); /* B */
    assert_int_equal(g_phase, 3);
    pc__thread_join(g_thread_a);

    assert_int_equal(g_res_c, 0);
    assert_int_equal(g_slot_c, x);
    assert_int_equal(slot_b, f);
    /* A waited for B's claim to settle, then found C's connection in X */
    assert_int_equal(g_a_done_at_claim, 0);
    assert_int_equal(atomic_load(&g_res_a), TRACK_OVER_MAX);
    assert_int_equal(g_slot_a, TRACK_NO_SLOT);
    /* one slot for K, holding C's connection */
    src_key_t kk;
    make_key(t, &g_k, &kk);
    int ready = 0;
    for (uint32_t i = 0; i < t->capacity; i++)
        if (atomic_load(&t->tags[i]) == (kk.tag | ST_READY) && slot_has_key(&t->slots[i], &kk)) {
            ready++;
            assert_int_equal(atomic_load(&t->slots[i].count), 1);
        }
    assert_int_equal(ready, 1);
    assert_int_equal(tracker_count(t, &g_k), 1);
    tracker_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_waits_on_a_claim_of_its_slot),
    };
    return cmocka_run_group_tests_name("tracker_claim", tests, NULL, NULL);
}
