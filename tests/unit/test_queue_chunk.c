/* SPDX-License-Identifier: MIT */
/* Intrusive queues and send chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/chunk.h"
#include "core/queue.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_order_and_remove),
        cmocka_unit_test(chunks),
    };
    return cmocka_run_group_tests_name("queue_chunk", tests, NULL, NULL);
}
