/* SPDX-License-Identifier: MIT */
/* Intrusive queues, send chunks and the counter that bounds their memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/chunk.h"
#include "core/queue.h"
#include "core/stats.h"

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

static void chunks(void **state)
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_order_and_remove),
        cmocka_unit_test(chunks),
        cmocka_unit_test(counter_within_limit),
    };
    return cmocka_run_group_tests_name("queue_chunk", tests, NULL, NULL);
}
