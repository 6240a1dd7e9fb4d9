/* SPDX-License-Identifier: MIT */
/* Intrusive queues, send chunks, the counter that bounds their memory, and
 * the bound a TLS send's records are checked against. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/chunk.h"
#include "core/queue.h"
#include "core/stats.h"
#include "tls/tls_sess.h"

typedef struct item_s {
    int v;
    queue_t link;
} item_t;

static void queue_order_and_remove(void **state)
{
    (void)state;
    queue_t h;
    queue_init(&h);
    assert_true(queue_empty(&h));
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        queue_init(&it[i].link);
        queue_insert_tail(&h, &it[i].link);
    }
    queue_remove(&it[2].link);
    assert_false(queue_linked(&it[2].link));
    int expect[] = {0, 1, 3, 4}, k = 0;
    queue_t *e;
    queue_foreach(e, &h) assert_int_equal(pc_container_of(e, item_t, link)->v, expect[k++]);
    assert_int_equal(k, 4);
    queue_t h2;
    queue_init(&h2);
    queue_insert_head(&h2, &it[2].link);
    queue_move_all(&h2, &h);
    assert_true(queue_empty(&h));
    int expect2[] = {2, 0, 1, 3, 4};
    k = 0;
    queue_foreach(e, &h2) assert_int_equal(pc_container_of(e, item_t, link)->v, expect2[k++]);
    assert_int_equal(k, 5);
}

static void chunks_round_up(void **state)
{
    (void)state;
    chunk_t *c = chunk_new(10);
    assert_non_null(c);
    assert_int_equal(c->cap, PC_CHUNK_MIN);
    assert_int_equal(c->len, 0);
    chunk_free(c);
    c = chunk_new(100000);
    assert_true(c->cap >= 100000);
    chunk_free(c);
}

/* counter_add_within (max_buffered_bytes's take): up to the limit
 * exactly, nothing added past it, no wrap-around for a huge add. */
static void counter_within_limit(void **state)
{
    (void)state;
    counter_t c = 0;
    assert_int_equal(counter_add_within(&c, 600, 1000), 1);
    assert_int_equal(counter_add_within(&c, 401, 1000), 0);
    assert_int_equal(counter_get(&c), 600);
    assert_int_equal(counter_add_within(&c, 400, 1000), 1);
    assert_int_equal(counter_get(&c), 1000);
    assert_int_equal(counter_add_within(&c, 1, 1000), 0);
    assert_int_equal(counter_add_within(&c, UINT64_MAX - 10, 1000), 0);
    assert_int_equal(counter_get(&c), 1000);
    counter_sub(&c, 1000);
    assert_int_equal(counter_add_within(&c, UINT64_MAX, UINT64_MAX), 1);
    assert_int_equal(counter_add_within(&c, 1, UINT64_MAX), 0);
}

#define HDR sizeof(chunk_t)

/* The memory bound of a TLS write, case by case. */
static void tls_write_bound_by_case(void **state)
{
    (void)state;
    const size_t o = TLS_RECORD_OVERHEAD_MAX, f = 16384;
    pc_buf_t one = {NULL, 2032};
    /* fits the room at its largest: nothing new */
    assert_int_equal(tls_write_mem_max(&one, 1, f, 2032 + o, HDR, PC_CHUNK_MIN), 0);
    /* a byte short: a chunk of its own (the plaintext alone would fit) */
    assert_int_equal(tls_write_mem_max(&one, 1, f, 2032 + o - 1, HDR, PC_CHUNK_MIN),
                     HDR + PC_CHUNK_MIN);
    /* small pieces are joined into one record */
    pc_buf_t three[3] = {{NULL, 100}, {NULL, 100}, {NULL, 100}};
    assert_int_equal(tls_write_mem_max(three, 3, f, 0, HDR, PC_CHUNK_MIN), HDR + PC_CHUNK_MIN);
    /* larger ones are written one by one: a full record, then a small one */
    pc_buf_t two[2] = {{NULL, f}, {NULL, 10}};
    assert_int_equal(tls_write_mem_max(two, 2, f, 0, HDR, PC_CHUNK_MIN),
                     HDR + f + o + HDR + PC_CHUNK_MIN);
    /* 2 MiB: 128 full records */
    pc_buf_t big = {NULL, (size_t)2 << 20};
    assert_int_equal(tls_write_mem_max(&big, 1, f, 0, HDR, PC_CHUNK_MIN), 128 * (HDR + f + o));
    /* a negotiated 512-byte fragment: 2048 bytes are four records */
    pc_buf_t k2 = {NULL, 2048};
    assert_int_equal(tls_write_mem_max(&k2, 1, 512, 0, HDR, PC_CHUNK_MIN),
                     4 * (HDR + PC_CHUNK_MIN));
    size_t records, last;
    assert_int_equal(tls_records_max(16385, f, &records, &last), 16385 + 2 * o);
    assert_int_equal(records, 2);
    assert_int_equal(last, 1);
    assert_int_equal(tls_records_max(f, f, &records, &last), f + o);
    assert_int_equal(records, 1);
    assert_int_equal(last, f);
}

static uint64_t rng_state = 88172645463325252ull;
static size_t rnd(size_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (size_t)(rng_state % n);
}

/* The bound is never below what the records take: a queue is simulated as
 * the engine fills it (a record goes in the last chunk if it fits, else in a
 * new one of HDR + max(PC_CHUNK_MIN, record)), with records cut as
 * tls_sess_write cuts them and any overhead up to the maximum. */
static void tls_write_bound_covers_every_record(void **state)
{
    (void)state;
    const size_t frags[] = {512, 1024, 2048, 4096, 16384};
    for (int trial = 0; trial < 20000; trial++) {
        size_t frag = frags[rnd(5)], over = rnd(TLS_RECORD_OVERHEAD_MAX + 1);
        size_t room = rnd(3) ? rnd(PC_CHUNK_MIN + 1) : rnd(40000);
        unsigned n = 1 + (unsigned)rnd(4);
        pc_buf_t b[4];
        size_t total = 0;
        for (unsigned i = 0; i < n; i++) {
            b[i].base = NULL;
            b[i].len = rnd(4) ? rnd(3000) : rnd(70000);
            total += b[i].len;
        }
        size_t bound = tls_write_mem_max(b, n, frag, room, HDR, PC_CHUNK_MIN);
        int joined = n > 1 && total <= TLS_PLAIN_CHUNK;
        size_t mem = 0, left = room;
        for (unsigned i = 0; i < (joined ? 1u : n); i++) {
            size_t len = joined ? total : b[i].len;
            while (len) {
                size_t r = (len < frag ? len : frag) + over;
                len -= len < frag ? len : frag;
                if (r <= left) {
                    left -= r;
                } else {
                    size_t cap = r > PC_CHUNK_MIN ? r : PC_CHUNK_MIN;
                    mem += HDR + cap;
                    left = cap - r;
                }
            }
        }
        if (mem > bound)
            print_message("frag %llu over %llu room %llu n %u: %llu > %llu\n",
                          (unsigned long long)frag, (unsigned long long)over,
                          (unsigned long long)room, n, (unsigned long long)mem,
                          (unsigned long long)bound);
        assert_true(mem <= bound);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_order_and_remove),
        cmocka_unit_test(chunks_round_up),
        cmocka_unit_test(counter_within_limit),
        cmocka_unit_test(tls_write_bound_by_case),
        cmocka_unit_test(tls_write_bound_covers_every_record),
    };
    return cmocka_run_group_tests_name("queue_chunk", tests, NULL, NULL);
}
