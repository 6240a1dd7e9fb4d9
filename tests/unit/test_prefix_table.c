/* SPDX-License-Identifier: MIT */
/* Longest-prefix-match tables against a brute-force reference. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "budget_alloc.h"

#include "portcullis.h"
#include "filter/prefix_table.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64*: fixed seeds keep failures reproducible */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static void seed(uint64_t s)
{
    rng_state = s * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t top_mask(unsigned len) /* top len bits of 64, len 0..64 */
{
    return len == 0 ? 0 : len >= 64 ? ~0ull : ~0ull << (64 - len);
}
/* Mask of a prefix of len bits (0..128) over (hi, lo). */
static void pmask(unsigned len, uint64_t *mh, uint64_t *ml)
{
    *mh = top_mask(len > 64 ? 64 : len);
    *ml = len > 64 ? top_mask(len - 64) : 0;
}

static int cmp_prefix(const void *x, const void *y)
{
    const lpm_prefix_t *a = x, *b = y;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
    return (int)a->len - (int)b->len;
}

/* Random overlapping prefixes: addresses drawn near a few bases so that they
 * nest and crowd (dense spans become nodes, sparse ones range lists), lengths
 * over the whole range including /0 and full length. Sorted, unique,
 * values 1..n. Returns n after de-duplication. */
static size_t random_prefixes(lpm_prefix_t *p, size_t n, int family, unsigned maxlen)
{
    uint64_t bh[6], bl[6];
    for (int i = 0; i < 6; i++) {
        bh[i] = rnd();
        bl[i] = rnd();
        if (family == 4) {
            bh[i] &= 0xffffffff00000000ull;
            bl[i] = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned len;
        unsigned r = (unsigned)(rnd() % 100);
        if (r < 3)
            len = 0;
        else if (r < 20)
            len = maxlen;
        else
            len = (unsigned)(rnd() % (maxlen + 1));
        int b = (int)(rnd() % 6);
        /* keep the base's top `keep` bits, randomise the rest */
        unsigned keep = (unsigned)(rnd() % (maxlen + 1));
        uint64_t kh, kl, hi, lo;
        pmask(keep, &kh, &kl);
        hi = (bh[b] & kh) | (rnd() & ~kh);
        lo = (bl[b] & kl) | (rnd() & ~kl);
        if (family == 4) {
            hi &= 0xffffffff00000000ull;
            lo = 0;
        }
        uint64_t mh, ml;
        pmask(len, &mh, &ml);
        p[i].hi = hi & mh;
        p[i].lo = lo & ml;
        p[i].len = (uint8_t)len;
    }
    qsort(p, n, sizeof *p, cmp_prefix);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w && p[w - 1].hi == p[i].hi && p[w - 1].lo == p[i].lo && p[w - 1].len == p[i].len)
            continue;
        p[w++] = p[i];
    }
    for (size_t i = 0; i < w; i++)
        p[i].value = (uint32_t)i + 1;
    return w;
}

/* Masks of the prefixes under test, computed once per round. */
static uint64_t *mask_hi, *mask_lo;

static void set_masks(const lpm_prefix_t *p, size_t n)
{
    free(mask_hi);
    free(mask_lo);
    mask_hi = malloc((n ? n : 1) * sizeof *mask_hi);
    mask_lo = malloc((n ? n : 1) * sizeof *mask_lo);
    assert_non_null(mask_hi);
    assert_non_null(mask_lo);
    for (size_t i = 0; i < n; i++)
        pmask(p[i].len, &mask_hi[i], &mask_lo[i]);
}

/* The reference: scan every prefix, keep the longest that contains the
 * address. This test is single-threaded, so ThreadSanitizer has nothing to
 * find in the scan, and instrumented it made the TSan stage's run take 70 s
 * alone and over the 120 s limit beside another test (the huge-block rounds
 * scan 400k prefixes per check); the scan is left uninstrumented there. */
#if defined(__SANITIZE_THREAD__)
#define NO_TSAN __attribute__((no_sanitize_thread))
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NO_TSAN __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef NO_TSAN
#define NO_TSAN
#endif
NO_TSAN static uint32_t brute(const lpm_prefix_t *p, size_t n, uint64_t hi, uint64_t lo)
{
    uint32_t best = LPM_NONE;
    int bestlen = -1;
    for (size_t i = 0; i < n; i++) {
        if ((hi & mask_hi[i]) == p[i].hi && (lo & mask_lo[i]) == p[i].lo &&
            (int)p[i].len > bestlen) {
            best = p[i].value;
            bestlen = p[i].len;
        }
    }
    return best;
}

static uint32_t lookup(lpm_t *t, uint64_t hi, uint64_t lo)
{
    return t->family == 4 ? lpm_lookup4(t, (uint32_t)(hi >> 32)) : lpm_lookup6(t, hi, lo);
}

/* Check one address on both popcount paths. */
static void check(lpm_t *t, const lpm_prefix_t *p, size_t n, uint64_t hi, uint64_t lo)
{
    if (t->family == 4) {
        hi &= 0xffffffff00000000ull;
        lo = 0;
    }
    uint32_t want = brute(p, n, hi, lo);
    int hw = t->hw_popcnt;
    t->hw_popcnt = 0;
    uint32_t got_portable = lookup(t, hi, lo);
    t->hw_popcnt = hw;
    uint32_t got = lookup(t, hi, lo);
    if (got != want || got_portable != want)
        fail_msg("family %d addr %016llx:%016llx: got %u/%u want %u", t->family,
                 (unsigned long long)hi, (unsigned long long)lo, got, got_portable, want);
}

static lpm_shape_t shape_sum;
static int saw_lo_keys;

/* Build from random prefixes and compare >= 1e5 random lookups plus the
 * edges of every prefix. */
static void random_round(int family, unsigned maxlen, size_t n, uint64_t s)
{
    seed(s);
    lpm_prefix_t *p = malloc(n * sizeof *p);
    assert_non_null(p);
    n = random_prefixes(p, n, family, maxlen);
    set_masks(p, n);
    lpm_t t;
    assert_int_equal(lpm_build(&t, family, p, n), 0);
    lpm_shape_t sh;
    lpm_shape(&t, &sh);
    shape_sum.nodes += sh.nodes;
    shape_sum.range_lists += sh.range_lists;
    if (t.range_lo) saw_lo_keys = 1;
    if (maxlen <= 64) assert_false(t.range_lo); /* the 64-bit-key search is the one tested */

    for (int i = 0; i < 100000; i++) {
        uint64_t hi = rnd(), lo = rnd();
        if (i & 1) { /* inside a random prefix */
            const lpm_prefix_t *q = &p[rnd() % n];
            uint64_t mh, ml;
            pmask(q->len, &mh, &ml);
            hi = q->hi | (hi & ~mh);
            lo = q->lo | (lo & ~ml);
        }
        check(&t, p, n, hi, lo);
    }
    /* first and last address of each prefix and their outside neighbours */
    uint64_t unit_hi = family == 4 ? 1ull << 32 : 0, unit_lo = family == 4 ? 0 : 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t mh, ml;
        pmask(p[i].len, &mh, &ml);
        if (family == 4) mh |= 0xffffffffull;
        uint64_t eh = p[i].hi | ~mh, el = family == 4 ? 0 : p[i].lo | ~ml;
        check(&t, p, n, p[i].hi, p[i].lo);
        check(&t, p, n, eh, el);
        /* start - 1, end + 1 (wrapping at the ends of the space) */
        uint64_t bh = p[i].hi - (p[i].lo < unit_lo ? 1 : 0) - unit_hi, bl = p[i].lo - unit_lo;
        uint64_t ah = eh + (el + unit_lo < el ? 1 : 0) + unit_hi, al = el + unit_lo;
        check(&t, p, n, bh, bl);
        check(&t, p, n, ah, al);
    }
    lpm_free(&t);
    free(p);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_empty(void **state)
{
    (void)state;
    lpm_t t4, t6;
    assert_int_equal(lpm_build(&t4, 4, NULL, 0), 0);
    assert_int_equal(lpm_build(&t6, 6, NULL, 0), 0);
    assert_int_equal(lpm_lookup4(&t4, 0x01020304), LPM_NONE);
    assert_int_equal(lpm_lookup6(&t6, ~0ull, 1), LPM_NONE);
    lpm_free(&t4);
    lpm_free(&t6);
}

static void test_edges_v4(void **state)
{
    (void)state;
    lpm_prefix_t p[] = {
        {0, 0, 1, 0},                      /* 0.0.0.0/0 */
        {0, 0, 2, 32},                     /* 0.0.0.0/32 */
        {0x0a00000000000000ull, 0, 3, 8},  /* 10.0.0.0/8 */
        {0x0a01020300000000ull, 0, 4, 32}, /* 10.1.2.3/32 */
        {0xffffffff00000000ull, 0, 5, 32}, /* 255.255.255.255/32 */
    };
    lpm_t t;
    assert_int_equal(lpm_build(&t, 4, p, 5), 0);
    assert_int_equal(lpm_lookup4(&t, 0), 2);
    assert_int_equal(lpm_lookup4(&t, 1), 1);
    assert_int_equal(lpm_lookup4(&t, 0x0a000000), 3);
    assert_int_equal(lpm_lookup4(&t, 0x0a010202), 3);
    assert_int_equal(lpm_lookup4(&t, 0x0a010203), 4);
    assert_int_equal(lpm_lookup4(&t, 0x0a010204), 3);
    assert_int_equal(lpm_lookup4(&t, 0x0affffff), 3);
    assert_int_equal(lpm_lookup4(&t, 0x0b000000), 1);
    assert_int_equal(lpm_lookup4(&t, 0xfffffffe), 1);
    assert_int_equal(lpm_lookup4(&t, 0xffffffff), 5);
    lpm_free(&t);
}

static void test_edges_v6(void **state)
{
    (void)state;
    lpm_prefix_t p[] = {
        {0, 0, 1, 0},                             /* ::/0 */
        {0, 0, 2, 128},                           /* ::/128 */
        {0x20010db800000000ull, 0, 3, 32},        /* 2001:db8::/32 */
        {0x20010db800000000ull, 0x10ull, 4, 127}, /* 2001:db8::10/127 */
        {0xffffffffffffffffull, 0xffffffffffffffffull, 5, 128},
    };
    lpm_t t;
    assert_int_equal(lpm_build(&t, 6, p, 5), 0);
    assert_int_equal(lpm_lookup6(&t, 0, 0), 2);
    assert_int_equal(lpm_lookup6(&t, 0, 1), 1);
    assert_int_equal(lpm_lookup6(&t, 0x20010db800000000ull, 0x0f), 3);
    assert_int_equal(lpm_lookup6(&t, 0x20010db800000000ull, 0x10), 4);
    assert_int_equal(lpm_lookup6(&t, 0x20010db800000000ull, 0x11), 4);
    assert_int_equal(lpm_lookup6(&t, 0x20010db800000000ull, 0x12), 3);
    assert_int_equal(lpm_lookup6(&t, 0x20010db8ffffffffull, ~0ull), 3);
    assert_int_equal(lpm_lookup6(&t, 0x20010db900000000ull, 0), 1);
    assert_int_equal(lpm_lookup6(&t, ~0ull, ~0ull - 1), 1);
    assert_int_equal(lpm_lookup6(&t, ~0ull, ~0ull), 5);
    lpm_free(&t);
}

/* Prefixes longer than /64 inside ::/64, the last of them ending below 2^64
 * (adding 1 to its end carries into no high word: not past the space), and a
 * table whose only start with low-word bits is its one prefix's. */
static void test_edges_v6_low(void **state)
{
    (void)state;
    lpm_prefix_t p[] = {
        {0, 0, 1, 0},       /* ::/0 */
        {0, 0x100, 2, 120}, /* ::100/120 */
        {0, 0x180, 3, 128}, /* ::180/128, the last prefix */
    };
    lpm_t t;
    assert_int_equal(lpm_build(&t, 6, p, 3), 0);
    assert_int_equal(lpm_lookup6(&t, 0, 0), 1);
    assert_int_equal(lpm_lookup6(&t, 0, 0xff), 1);
    assert_int_equal(lpm_lookup6(&t, 0, 0x100), 2);
    assert_int_equal(lpm_lookup6(&t, 0, 0x17f), 2);
    assert_int_equal(lpm_lookup6(&t, 0, 0x180), 3);
    assert_int_equal(lpm_lookup6(&t, 0, 0x181), 2);
    assert_int_equal(lpm_lookup6(&t, 0, 0x1ff), 2);
    assert_int_equal(lpm_lookup6(&t, 0, 0x200), 1);
    assert_int_equal(lpm_lookup6(&t, 1, 0), 1);
    assert_int_equal(lpm_lookup6(&t, ~0ull, ~0ull), 1);
    lpm_free(&t);

    /* 2001::8000:0:0:0/65: the upper half of 2001::/64 */
    lpm_prefix_t q[] = {{0x2001000000000000ull, 0x8000000000000000ull, 7, 65}};
    assert_int_equal(lpm_build(&t, 6, q, 1), 0);
    assert_true(t.range_lo);
    assert_int_equal(lpm_lookup6(&t, 0x2001000000000000ull, 0), LPM_NONE);
    assert_int_equal(lpm_lookup6(&t, 0x2001000000000000ull, 0x7fffffffffffffffull), LPM_NONE);
    assert_int_equal(lpm_lookup6(&t, 0x2001000000000000ull, 0x8000000000000000ull), 7);
    assert_int_equal(lpm_lookup6(&t, 0x2001000000000000ull, ~0ull), 7);
    assert_int_equal(lpm_lookup6(&t, 0x2001000000000001ull, 0), LPM_NONE);
    lpm_free(&t);
}

/* Neighbouring intervals with equal values merge: a prefix inside one of
 * the same value adds nothing, and two adjacent prefixes of one value are
 * one interval. */
static void test_merge_equal(void **state)
{
    (void)state;
    lpm_prefix_t nested[] = {
        {0x0a00000000000000ull, 0, 7, 8},  /* 10.0.0.0/8 */
        {0x0a01020000000000ull, 0, 7, 24}, /* 10.1.2.0/24 */
    };
    lpm_t t;
    lpm_shape_t sh;
    assert_int_equal(lpm_build(&t, 4, nested, 2), 0);
    lpm_shape(&t, &sh);
    assert_int_equal(sh.nodes, 0); /* every root slot a leaf */
    assert_int_equal(sh.range_lists, 0);
    assert_int_equal(lpm_lookup4(&t, 0x0a010203), 7);
    assert_int_equal(lpm_lookup4(&t, 0x0b000000), LPM_NONE);
    lpm_free(&t);

    lpm_prefix_t adjacent[] = {
        {0x0a01020000000000ull, 0, 7, 24}, /* 10.1.2.0/24 */
        {0x0a01030000000000ull, 0, 7, 24}, /* 10.1.3.0/24 */
    };
    assert_int_equal(lpm_build(&t, 4, adjacent, 2), 0);
    lpm_shape(&t, &sh);
    assert_int_equal(sh.range_lists, 1);
    assert_int_equal(sh.range_entries, 3); /* none, 10.1.2.0-10.1.3.255, none */
    assert_int_equal(lpm_lookup4(&t, 0x0a0101ff), LPM_NONE);
    assert_int_equal(lpm_lookup4(&t, 0x0a010200), 7);
    assert_int_equal(lpm_lookup4(&t, 0x0a0103ff), 7);
    assert_int_equal(lpm_lookup4(&t, 0x0a010400), LPM_NONE);
    lpm_free(&t);
}

/* Values reach LPM_MAX_VALUE, and so may the number of prefixes. */
static void test_value_limits(void **state)
{
    (void)state;
    lpm_t t;
    lpm_prefix_t top[] = {{0x0a00000000000000ull, 0, LPM_MAX_VALUE, 8}};
    assert_int_equal(lpm_build(&t, 4, top, 1), 0);
    assert_int_equal(lpm_lookup4(&t, 0x0a000001), LPM_MAX_VALUE);
    lpm_free(&t);
    lpm_prefix_t over[] = {{0x0a00000000000000ull, 0, LPM_MAX_VALUE + 1, 8}};
    assert_int_equal(lpm_build(&t, 4, over, 1), PC_EINVAL);
    /* LPM_MAX_VALUE prefixes pass the count check and reach the allocation
     * (refused here, before any prefix is read); one more does not. */
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    budget_alloc_reset(0);
    assert_int_equal(lpm_build(&t, 4, top, LPM_MAX_VALUE), PC_ENOMEM);
    assert_int_equal(lpm_build(&t, 4, top, (size_t)LPM_MAX_VALUE + 1), PC_EINVAL);
    assert_int_equal(budget_alloc_live(), 0);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

/* One root slot cut into m intervals: m - 1 adjacent prefixes at its start
 * (values 2..m) under a prefix covering the slot (value 1). Lists of every
 * size up to the largest (16 IPv4, 32 IPv6: PC_LPM_RANGE_MAX4/6) and one
 * past it (a node); the search takes a fixed number of steps, which must be
 * enough for the largest. Every interval's first and last address, and the
 * addresses either side of the slot. */
static void test_list_sizes(void **state)
{
    (void)state;
    for (int family = 4; family <= 6; family += 2) {
        size_t max = family == 4 ? 16 : 32;
        /* 10.11.0.0/16 cut into /24s; 2001::/16 cut into /32s */
        uint64_t base = family == 4 ? 0x0a0b000000000000ull : 0x2001000000000000ull;
        unsigned shift = family == 4 ? 40 : 32, sub = family == 4 ? 24 : 32;
        for (size_t m = 2; m <= max + 1; m++) {
            lpm_prefix_t p[40];
            p[0] = (lpm_prefix_t){base, 0, 1, 16};
            for (size_t i = 0; i + 1 < m; i++)
                p[i + 1] =
                    (lpm_prefix_t){base | (uint64_t)i << shift, 0, (uint32_t)i + 2, (uint8_t)sub};
            lpm_t t;
            assert_int_equal(lpm_build(&t, family, p, m), 0);
            lpm_shape_t sh;
            lpm_shape(&t, &sh);
            if (m <= max) {
                assert_int_equal(sh.range_lists, 1);
                assert_int_equal(sh.range_entries, m);
                assert_int_equal(sh.nodes, 0);
                /* the one block, laid out as prefix_table.h says, and its
                 * entry's hint: the lines it reaches past its first */
                size_t bytes = family == 4 ? ((2 * m + 3) & ~(size_t)3) + 4 * m
                                           : 8 * m + ((4 * m + 7) & ~(size_t)7);
                assert_int_equal(t.ranges_bytes, bytes);
                uint32_t e = t.root[base >> 48];
                assert_int_equal((e >> 27) & 7, (bytes - 1) / 64 < 7 ? (bytes - 1) / 64 : 7);
            } else if (family == 4) {
                /* one node: children 0..m-2 the /24s, then one run of the /16 */
                assert_int_equal(sh.nodes, 1);
                assert_int_equal(sh.node_entries, m);
                assert_int_equal(sh.range_lists, 0);
            } else {
                /* a node for 2001::/16 (its child 0, then the rest of the
                 * /16) over a node for 2001:00xx::/24 as the IPv4 one */
                assert_int_equal(sh.nodes, 2);
                assert_int_equal(sh.node_entries, 2 + m);
                assert_int_equal(sh.range_lists, 0);
            }
            uint64_t unit = 1ull << shift, slot = 1ull << 48;
            for (size_t i = 0; i < m; i++) {
                uint32_t want = i + 1 < m ? (uint32_t)i + 2 : 1;
                uint64_t first = base + i * unit;
                uint64_t last = i + 1 < m ? first + unit - 1 : base + slot - 1;
                if (family == 4) {
                    assert_int_equal(lpm_lookup4(&t, (uint32_t)(first >> 32)), want);
                    assert_int_equal(lpm_lookup4(&t, (uint32_t)(last >> 32)), want);
                } else {
                    assert_int_equal(lpm_lookup6(&t, first, 0), want);
                    assert_int_equal(lpm_lookup6(&t, last, ~0ull), want);
                }
            }
            if (family == 4) {
                assert_int_equal(lpm_lookup4(&t, (uint32_t)((base - 1) >> 32)), LPM_NONE);
                assert_int_equal(lpm_lookup4(&t, (uint32_t)((base + slot) >> 32)), LPM_NONE);
            } else {
                assert_int_equal(lpm_lookup6(&t, base - 1, ~0ull), LPM_NONE);
                assert_int_equal(lpm_lookup6(&t, base + slot, 0), LPM_NONE);
            }
            lpm_free(&t);
        }
    }
}

/* 1e5 random lookups per round (fixed seeds). */
static void test_random_v4(void **state)
{
    (void)state;
    random_round(4, 32, 64, 1);
    random_round(4, 32, 1500, 2);
}

static void test_random_v6(void **state)
{
    (void)state;
    random_round(6, 128, 64, 11);
    random_round(6, 128, 1500, 12);
    random_round(6, 64, 1500, 13); /* all lengths <= 64, as in BGP tables */
}

/* The random rounds went through every representation. */
static void test_random_covered_shapes(void **state)
{
    (void)state;
    assert_true(shape_sum.nodes > 0);
    assert_true(shape_sum.range_lists > 0);
    assert_true(saw_lo_keys);
}

/* A crowded /16: every /24 and every /32 of one /24, checked exhaustively. */
static void test_dense_v4(void **state)
{
    (void)state;
    lpm_prefix_t *p = calloc(600, sizeof *p);
    size_t n = 0;
    p[n++] = (lpm_prefix_t){0xc0a8000000000000ull, 0, 0, 16}; /* 192.168.0.0/16 */
    for (uint64_t c = 0; c < 256; c++) {
        p[n++] = (lpm_prefix_t){(0xc0a80000ull | c << 8) << 32, 0, 0, 24};
        if (c == 7)
            for (uint64_t h = 0; h < 256; h += 1 + (h & 1))
                p[n++] = (lpm_prefix_t){(0xc0a80700ull | h) << 32, 0, 0, 32};
    }
    for (size_t i = 0; i < n; i++)
        p[i].value = (uint32_t)i + 1;
    set_masks(p, n);
    lpm_t t;
    assert_int_equal(lpm_build(&t, 4, p, n), 0);
    lpm_shape_t sh;
    lpm_shape(&t, &sh);
    assert_true(sh.nodes >= 2); /* the /16 and the /24 full of hosts */
    for (uint64_t a = 0xc0a70000; a < 0xc0a90100; a++)
        check(&t, p, n, a << 32, 0);
    lpm_free(&t);
    free(p);
}

/* A table large enough to move into the huge-page block (bench-like: 400k
 * IPv4 prefixes spread over the space, /8 to /32): the block is used, its
 * bytes counted, and lookups agree with the brute force on a sample plus the
 * first and last address of every 256th prefix. */
static void test_huge_block_v4(void **state)
{
    (void)state;
    seed(4242);
    size_t n = 400000, dense = 256 + 128;
    lpm_prefix_t *p = malloc((n + dense) * sizeof *p);
    assert_non_null(p);
    /* and one crowded /16 (10.20.0.0/16: every /24, every other /32 of one):
     * nodes of 256 runs, blocks longer than the 7 lines a hint can say */
    for (uint64_t c = 0; c < 256; c++)
        p[n + c] = (lpm_prefix_t){(0x0a140000ull | c << 8) << 32, 0, 0, 24};
    for (uint64_t h = 0; h < 128; h++)
        p[n + 256 + h] = (lpm_prefix_t){(0x0a140700ull | 2 * h) << 32, 0, 0, 32};
    for (size_t i = 0; i < n; i++) {
        static const uint8_t lens[] = {8, 16, 20, 22, 24, 24, 24, 24, 32, 32, 32, 32};
        unsigned len = lens[rnd() % sizeof lens];
        uint64_t mh, ml;
        pmask(len, &mh, &ml);
        p[i].hi = (rnd() << 32) & mh;
        p[i].lo = 0;
        p[i].len = (uint8_t)len;
    }
    n += dense;
    qsort(p, n, sizeof *p, cmp_prefix);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w && p[w - 1].hi == p[i].hi && p[w - 1].len == p[i].len) continue;
        p[w++] = p[i];
    }
    n = w;
    for (size_t i = 0; i < n; i++)
        p[i].value = (uint32_t)i + 1;
    set_masks(p, n);
    lpm_t t;
    assert_int_equal(lpm_build(&t, 4, p, n), 0);
    assert_non_null(t.block);
    assert_true(lpm_bytes(&t) >= t.block_bytes);
    assert_true((const unsigned char *)t.root >= (const unsigned char *)t.block &&
                (const unsigned char *)t.root < (const unsigned char *)t.block + t.block_bytes);
    assert_int_equal((uintptr_t)t.root & ((2u << 20) - 1), 0);
    /* every block's line hint matches where it lies (parts 64-byte aligned) */
    size_t blocks;
    assert_int_equal(lpm_check_lines(&t, &blocks), 0);
    assert_true(blocks > 10000);
    /* and a wrong hint is found: one root entry's, changed */
    size_t slot = 0;
    while (!(t.root[slot] & 0x80000000u))
        slot++;
    uint32_t saved = t.root[slot];
    t.root[slot] = saved ^ (1u << 27);
    size_t seen;
    assert_int_equal(lpm_check_lines(&t, &seen), 1);
    assert_int_equal(seen, blocks);
    t.root[slot] = saved;
    for (int i = 0; i < 1500; i++)
        check(&t, p, n, rnd(), 0);
    for (uint64_t a = 0x0a140000; a < 0x0a150000; a += 251) /* each check scans all */
        check(&t, p, n, a << 32, 0);
    for (uint64_t a = 0x0a140700; a < 0x0a140800; a += 3)
        check(&t, p, n, a << 32, 0);
    for (size_t i = 0; i < n; i += 256) {
        uint64_t mh, ml;
        pmask(p[i].len, &mh, &ml);
        check(&t, p, n, p[i].hi, 0);
        check(&t, p, n, p[i].hi | (~mh & 0xffffffff00000000ull), 0);
    }
    lpm_free(&t);
    assert_null(t.block);
    free(p);
}

/* 150000 random IPv6 prefixes (fewer once repeats are dropped: *n), the
 * same every call: a table over the huge-page threshold. free() them. */
static lpm_prefix_t *huge_v6_prefixes(size_t *n)
{
    seed(4343);
    *n = 150000;
    lpm_prefix_t *p = malloc(*n * sizeof *p);
    assert_non_null(p);
    *n = random_prefixes(p, *n, 6, 128);
    set_masks(p, *n);
    return p;
}

/* The same for IPv6 (keys of 128 bits: range lists up to 640 bytes, more
 * lines than a hint can say): a table over the huge-page threshold. */
static void test_huge_block_v6(void **state)
{
    (void)state;
    size_t n;
    lpm_prefix_t *p = huge_v6_prefixes(&n);
    lpm_t t;
    assert_int_equal(lpm_build(&t, 6, p, n), 0);
    assert_non_null(t.block);
    assert_true(t.range_lo);
    size_t blocks;
    assert_int_equal(lpm_check_lines(&t, &blocks), 0);
    lpm_shape_t sh;
    lpm_shape(&t, &sh);
    assert_int_equal(blocks, sh.nodes + sh.range_lists);
    for (int i = 0; i < 500; i++) {
        const lpm_prefix_t *q = &p[rnd() % n];
        check(&t, p, n, rnd(), rnd());
        check(&t, p, n, q->hi, q->lo);
    }
    lpm_free(&t);
    free(p);
}

/* lpm_bytes counts what the table holds: every allocation still live once
 * built, plus the table struct; for a table in a huge-page block too, and
 * for one whose block could not be had (best effort: the table stays as
 * built, in its parts). */
static void build_counted(lpm_t *t, const lpm_prefix_t *p, size_t n, long budget)
{
    budget_alloc_reset(budget);
    assert_int_equal(lpm_build(t, 6, p, n), 0);
    assert_int_equal(lpm_bytes(t), sizeof *t + (size_t)budget_alloc_live_bytes());
    for (size_t i = 0; i < n; i += n / 64 + 1)
        check(t, p, n, p[i].hi, p[i].lo);
}

static void test_bytes_accounting(void **state)
{
    (void)state;
    size_t n;
    lpm_prefix_t *p = huge_v6_prefixes(&n);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    lpm_t t;
    build_counted(&t, p, 400, -1); /* small: no block */
    assert_null(t.block);
    lpm_free(&t);
    build_counted(&t, p, n, -1);
    assert_non_null(t.block);
    lpm_free(&t);
    assert_int_equal(budget_alloc_live(), 0);
    /* the block is the last allocation: the fewest allowed that give one,
     * less one, refuse it alone */
    long lo = 0, hi = 256;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        budget_alloc_reset(mid);
        int rc = lpm_build(&t, 6, p, n);
        assert_true(rc == 0 || rc == PC_ENOMEM);
        if (rc == 0 && t.block)
            hi = mid;
        else
            lo = mid + 1;
        lpm_free(&t);
    }
    assert_true(lo > 0 && lo < 256);
    build_counted(&t, p, n, lo - 1);
    assert_null(t.block);
    assert_int_equal(budget_alloc_failed(), 1);
    lpm_free(&t);
    assert_int_equal(budget_alloc_live(), 0);
    assert_int_equal(pc_set_allocator(NULL), 0);
    free(p);
}

static void test_invalid_input(void **state)
{
    (void)state;
    lpm_t t;
    lpm_prefix_t unsorted[] = {{0x0b00000000000000ull, 0, 1, 8}, {0x0a00000000000000ull, 0, 2, 8}};
    assert_int_equal(lpm_build(&t, 4, unsorted, 2), PC_EINVAL);
    lpm_prefix_t dup[] = {{0x0a00000000000000ull, 0, 1, 8}, {0x0a00000000000000ull, 0, 2, 8}};
    assert_int_equal(lpm_build(&t, 4, dup, 2), PC_EINVAL);
    lpm_prefix_t host[] = {{0x0a00000100000000ull, 0, 1, 8}};
    assert_int_equal(lpm_build(&t, 4, host, 1), PC_EINVAL);
    lpm_prefix_t zero[] = {{0x0a00000000000000ull, 0, 0, 8}};
    assert_int_equal(lpm_build(&t, 4, zero, 1), PC_EINVAL);
    lpm_prefix_t long4[] = {{0x0a00000000000000ull, 0, 1, 33}};
    assert_int_equal(lpm_build(&t, 4, long4, 1), PC_EINVAL);
    lpm_prefix_t v6in4[] = {{0x0a00000000000001ull, 0, 1, 64}};
    assert_int_equal(lpm_build(&t, 4, v6in4, 1), PC_EINVAL);
    lpm_prefix_t host6[] = {{0x20010db800000000ull, 1, 1, 64}}; /* 2001:db8::1/64 */
    assert_int_equal(lpm_build(&t, 6, host6, 1), PC_EINVAL);
    lpm_prefix_t host6_lo[] = {{0x20010db800000000ull, 0x100, 1, 120}}; /* 2001:db8::100/120 */
    assert_int_equal(lpm_build(&t, 6, host6_lo, 1), 0);
    lpm_free(&t);
    assert_int_equal(lpm_build(&t, 5, NULL, 0), PC_EINVAL);
    lpm_free(&t);
}

/* ---- allocation failures -------------------------------------------------- */

static void test_alloc_failure(void **state)
{
    (void)state;
    seed(99);
    lpm_prefix_t *p = malloc(400 * sizeof *p);
    size_t n = random_prefixes(p, 400, 6, 128);
    set_masks(p, n);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    int ok = 0;
    for (long budget = 0; budget < 10000 && !ok; budget++) {
        budget_alloc_reset(budget);
        lpm_t t;
        int rc = lpm_build(&t, 6, p, n);
        if (rc == 0) {
            ok = 1;
            check(&t, p, n, p[n / 2].hi, p[n / 2].lo);
        } else {
            assert_int_equal(rc, PC_ENOMEM);
            /* left empty, of its family */
            assert_int_equal(t.family, 6);
            assert_null(t.root);
            assert_int_equal(lpm_lookup6(&t, p[0].hi, p[0].lo), LPM_NONE);
        }
        lpm_free(&t);
        assert_int_equal(t.family, 6); /* an empty table, still IPv6 */
        assert_int_equal(budget_alloc_live(), 0);
    }
    assert_true(ok);
    assert_int_equal(pc_set_allocator(NULL), 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_edges_v4),
        cmocka_unit_test(test_edges_v6),      cmocka_unit_test(test_random_v4),
        cmocka_unit_test(test_random_v6),     cmocka_unit_test(test_random_covered_shapes),
        cmocka_unit_test(test_dense_v4),      cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_alloc_failure), cmocka_unit_test(test_huge_block_v4),
        cmocka_unit_test(test_huge_block_v6), cmocka_unit_test(test_list_sizes),
        cmocka_unit_test(test_edges_v6_low),  cmocka_unit_test(test_merge_equal),
        cmocka_unit_test(test_value_limits),  cmocka_unit_test(test_bytes_accounting),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(mask_hi);
    free(mask_lo);
    return rc;
}
