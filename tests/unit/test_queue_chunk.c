/* SPDX-License-Identifier: MIT */
/* Intrusive queues, send chunks, the counter that bounds their memory, and
 * the bound a TLS send's records are checked against. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/chunk.h"
#include "core/queue.h"
#include "core/stats.h"
#include "portcullis.h"
#include "tls/tls_sess.h"
#include "xorshift.h"

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
    /* the moved elements' last is dst's tail now: one added goes after it */
    item_t last = {5, {NULL, NULL}};
    queue_insert_tail(&h2, &last.link);
    int expect3[] = {2, 0, 1, 3, 4, 5};
    k = 0;
    queue_foreach(e, &h2) assert_int_equal(pc_container_of(e, item_t, link)->v, expect3[k++]);
    assert_int_equal(k, 6);
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
    /* no room for the header: NULL, not a block of a few bytes whose cap
     * says SIZE_MAX (header + cap wrapped round) */
    assert_null(chunk_new(SIZE_MAX));
    assert_null(chunk_new(SIZE_MAX - sizeof(chunk_t) + 1));
}

/* A new chunk is empty and unlinked whatever its block held before: an
 * allocator that hands out dirty blocks (every byte 0xa5). */
static void *dirty_malloc(void *u, size_t n)
{
    (void)u;
    void *p = malloc(n);
    if (p) memset(p, 0xa5, n);
    return p;
}
static void *plain_realloc(void *u, void *p, size_t n)
{
    (void)u;
    return realloc(p, n);
}
static void plain_free(void *u, void *p)
{
    (void)u;
    free(p);
}

static void chunk_new_is_empty_and_unlinked(void **state)
{
    (void)state;
    const pc_allocator_t dirty = {dirty_malloc, NULL, plain_realloc, plain_free, NULL};
    assert_int_equal(pc_set_allocator(&dirty), 0);
    chunk_t *c = chunk_new(10);
    assert_non_null(c);
    assert_int_equal(c->off, 0);
    assert_int_equal(c->len, 0);
    assert_false(queue_linked(&c->link));
    chunk_free(c);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

/* A queue's chunks: their memory and their pending bytes (data[off, len))
 * summed, then all freed (ASan and valgrind see a leak if one is left), the
 * queue empty and reusable. */
static void chunks_of_a_queue(void **state)
{
    (void)state;
    queue_t q;
    queue_init(&q);
    assert_int_equal(chunks_mem(&q), 0);
    assert_int_equal(chunks_bytes(&q), 0);
    const size_t need[] = {10, 5000, 100000};
    size_t want = 0;
    for (int i = 0; i < 3; i++) {
        chunk_t *c = chunk_new(need[i]);
        assert_non_null(c);
        c->len = need[i];
        c->off = (size_t)i; /* 0, 1 and 2 bytes already sent */
        queue_insert_tail(&q, &c->link);
        want += chunk_mem(c);
    }
    assert_int_equal(chunks_mem(&q), want);
    assert_int_equal(chunks_bytes(&q), 10 + 5000 + 100000 - 3);
    assert_true(want >= 3 * sizeof(chunk_t) + PC_CHUNK_MIN + 5000 + 100000);
    chunks_free(&q);
    assert_true(queue_empty(&q));
    assert_int_equal(chunks_mem(&q), 0);
    chunks_free(&q); /* an empty queue: nothing to do */
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
    const size_t o = TLS_RECORD_OVERHEAD_MAX, e = TLS_EXTRA_RECORD_MAX, f = 16384;
    const size_t small = HDR + PC_CHUNK_MIN, big = HDR + f + o;
    pc_buf_t one = {.base = NULL, .len = 2032};
    /* fits the room at its largest, with a KeyUpdate ahead: nothing new */
    assert_int_equal(tls_write_mem_max(&one, 1, f, 1, 2032 + o + e, HDR, PC_CHUNK_MIN), 0);
    /* a byte short: a chunk, which the extra record would share (the
     * plaintext alone would fit the room) */
    assert_int_equal(tls_write_mem_max(&one, 1, f, 1, 2032 + o + e - 1, HDR, PC_CHUNK_MIN), small);
    /* small pieces are joined into one record */
    pc_buf_t three[3] = {
        {.base = NULL, .len = 100}, {.base = NULL, .len = 100}, {.base = NULL, .len = 100}};
    assert_int_equal(tls_write_mem_max(three, 3, f, 1, 0, HDR, PC_CHUNK_MIN), small);
    /* larger ones are written one by one: a full record, then a small one */
    pc_buf_t two[2] = {{.base = NULL, .len = f}, {.base = NULL, .len = 10}};
    assert_int_equal(tls_write_mem_max(two, 2, f, 1, 0, HDR, PC_CHUNK_MIN), big + 2 * small);
    /* 64 KiB: as many records as a multi-block write may cut (five of
     * 15872 bytes, the last of 2048; full records may follow a group), the
     * first four charged as full ones, and the extra one */
    pc_buf_t k64 = {.base = NULL, .len = (size_t)64 << 10};
    assert_int_equal(tls_write_mem_max(&k64, 1, f, 1, 0, HDR, PC_CHUNK_MIN), 4 * big + 2 * small);
    /* in a session that does not write multi-block (TLS 1.3, AEAD), in
     * fragments */
    assert_int_equal(tls_write_mem_max(&k64, 1, f, 0, 0, HDR, PC_CHUNK_MIN), 4 * big + small);
    /* below 4 fragments, in fragments */
    pc_buf_t k48 = {.base = NULL, .len = (size_t)48 << 10};
    assert_int_equal(tls_write_mem_max(&k48, 1, f, 1, 0, HDR, PC_CHUNK_MIN), 3 * big + small);
    /* a negotiated 512-byte fragment: records of at most 837 bytes, four to
     * a chunk; 2048 bytes are four records and the extra one (2 chunks), or
     * a multi-block write of the four (one) and the extra one (2 more, as
     * 4 more records might follow a group) */
    pc_buf_t k2 = {.base = NULL, .len = 2048};
    assert_int_equal(tls_write_mem_max(&k2, 1, 512, 1, 0, HDR, PC_CHUNK_MIN), 3 * small);
    pc_buf_t k15 = {.base = NULL, .len = 1500};
    assert_int_equal(tls_write_mem_max(&k15, 1, 512, 1, 0, HDR, PC_CHUNK_MIN), small);
#ifndef _WIN32 /* a WSABUF's length is 32 bits */
    /* lengths near the address space: refused, not wrapped */
    pc_buf_t huge[2] = {{.base = NULL, .len = (size_t)-1 / 2},
                        {.base = NULL, .len = (size_t)-1 / 2}};
    assert_true(tls_write_mem_max(huge, 2, f, 1, 0, HDR, PC_CHUNK_MIN) == (size_t)-1);
#endif
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
    return (size_t)(xorshift64(&rng_state) % n);
}

/* A simulated send queue, filled as the engine fills it: bytes of one
 * BIO write go in the last chunk if they fit, else in a new one of
 * HDR + max(PC_CHUNK_MIN, bytes). */
typedef struct simq_s {
    size_t left; /* room in the last chunk */
    size_t mem;  /* the new chunks' memory */
} simq_t;

static void simq_put(simq_t *q, size_t bytes)
{
    if (bytes <= q->left) {
        q->left -= bytes;
        return;
    }
    size_t cap = bytes > PC_CHUNK_MIN ? bytes : PC_CHUNK_MIN;
    q->mem += HDR + cap;
    q->left = cap - bytes;
}

/* How OpenSSL cuts writes into records, for the simulation: each record
 * expanded by over (a stream or AEAD cipher) or by any amount up to it (CBC
 * padding: !fixed); a KeyUpdate ahead of a write (always, or now and then:
 * keyupdate 2); multi-block groups (4 or 8 records in one BIO write, of
 * frag - 512 bytes when frag is a multiple of 4 KiB, else frag, started by
 * a write of 4 fragments, while 4 of them remain). */
typedef struct cut_s {
    size_t frag, over;
    int fixed, multi, keyupdate;
} cut_t;

static size_t expand(const cut_t *k)
{
    return k->fixed ? k->over : rnd(k->over + 1);
}

/* New chunks' memory the records of tls_sess_write(b, n) take in a queue
 * whose last chunk has room bytes free. */
static size_t sim_write(const pc_buf_t *b, unsigned n, size_t room, const cut_t *k)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += b[i].len;
    int joined = tls_write_joins(n, total);
    simq_t q = {room, 0};
    for (unsigned i = 0; i < (joined ? 1u : n); i++) {
        size_t len = joined ? total : b[i].len;
        if (!len) continue;
        if (k->keyupdate == 1 || (k->keyupdate == 2 && rnd(3) == 0)) simq_put(&q, 5 + expand(k));
        size_t cut = k->frag & 0xfff ? k->frag : k->frag - 512;
        int grouped = k->multi && len >= 4 * k->frag;
        while (grouped && len >= 4 * cut) {
            size_t group = len >= 8 * cut ? 8 : 4, bytes = 0;
            for (size_t r = 0; r < group; r++)
                bytes += cut + expand(k);
            simq_put(&q, bytes);
            len -= group * cut;
        }
        while (len) {
            size_t p = len < k->frag ? len : k->frag;
            simq_put(&q, p + expand(k));
            len -= p;
        }
    }
    return q.mem;
}

static void expect_covered(const pc_buf_t *b, unsigned n, size_t room, const cut_t *k)
{
    /* without multi-block writes, the bound that does not count them */
    size_t bound = tls_write_mem_max(b, n, k->frag, k->multi, room, HDR, PC_CHUNK_MIN);
    size_t mem = sim_write(b, n, room, k);
    if (mem > bound)
        print_message(
            "frag %llu over %llu fixed %d multi %d room %llu n %u len0 %llu: %llu > %llu\n",
            (unsigned long long)k->frag, (unsigned long long)k->over, k->fixed, k->multi,
            (unsigned long long)room, n, (unsigned long long)b[0].len, (unsigned long long)mem,
            (unsigned long long)bound);
    assert_true(mem <= bound);
    if (!k->multi) /* and the bound that counts them covers it too */
        assert_true(mem <= tls_write_mem_max(b, n, k->frag, 1, room, HDR, PC_CHUNK_MIN));
}

/* The bound is never below what the records take: random writes, cuts and
 * rooms, then the worst cases (the largest expansion on every record, a
 * KeyUpdate ahead of every write, long writes). */
static void tls_write_bound_covers_every_record(void **state)
{
    (void)state;
    const size_t frags[] = {512, 1024, 2048, 4096, 16384};
    for (int trial = 0; trial < 40000; trial++) {
        cut_t k = {frags[rnd(5)], rnd(TLS_RECORD_OVERHEAD_MAX + 1), (int)rnd(2), (int)rnd(2), 2};
        size_t room = rnd(3) ? rnd(PC_CHUNK_MIN + 1) : rnd(40000);
        unsigned n = 1 + (unsigned)rnd(4);
        pc_buf_t b[4];
        for (unsigned i = 0; i < n; i++) {
            b[i].base = NULL;
            b[i].len = rnd(4) ? rnd(3000) : rnd(4) ? rnd(70000) : rnd(3000000);
        }
        expect_covered(b, n, room, &k);
    }
    for (int f = 0; f < 5; f++)
        for (int multi = 0; multi < 2; multi++) {
            cut_t k = {frags[f], TLS_RECORD_OVERHEAD_MAX, 1, multi, 1};
            for (size_t len = 1; len <= ((size_t)8 << 20); len = len * 3 + 1) {
                pc_buf_t b = {.base = NULL, .len = len};
                expect_covered(&b, 1, 0, &k);
                expect_covered(&b, 1, PC_CHUNK_MIN - 1, &k);
            }
            /* every length up to 9 fragments (in steps of 1/512 of one) */
            size_t step = frags[f] / 512;
            for (size_t len = 1; len <= 9 * frags[f]; len += step) {
                pc_buf_t b = {.base = NULL, .len = len};
                expect_covered(&b, 1, 0, &k);
                expect_covered(&b, 1, 700, &k);
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_order_and_remove),
        cmocka_unit_test(chunks_round_up),
        cmocka_unit_test(chunk_new_is_empty_and_unlinked),
        cmocka_unit_test(chunks_of_a_queue),
        cmocka_unit_test(counter_within_limit),
        cmocka_unit_test(tls_write_bound_by_case),
        cmocka_unit_test(tls_write_bound_covers_every_record),
    };
    return cmocka_run_group_tests_name("queue_chunk", tests, NULL, NULL);
}
