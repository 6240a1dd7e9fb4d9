/* SPDX-License-Identifier: MIT */
/* The allocation seam: a counting allocator sees every allocation of a
 * server's life and every one is freed; a failing allocator makes creation
 * fail cleanly with PC_ENOMEM at every step, leaking nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "budget_alloc.h"

#include "portcullis.h"
#include "core/alloc.h"

static void on_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}

static void counts_and_frees_everything(void **state)
{
    (void)state;
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 2;
    cfg.cb.on_data = on_data;
    pc_server_t *s;
    assert_int_equal(pc_server_create(&cfg, &s), 0);
    assert_true(budget_alloc_live() > 0);
    /* the allocator cannot change under a live server */
    assert_int_equal(pc_set_allocator(NULL), PC_EBUSY);
    assert_true(pc_server_listen(s, "127.0.0.1:0") >= 0);
    assert_int_equal(pc_server_start(s), 0);
    assert_int_equal(pc_server_stop(s, 100), 0);
    pc_server_destroy(s);
    assert_int_equal(budget_alloc_live(), 0);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

static void every_failure_is_clean(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 2;
    cfg.cb.on_data = on_data;
    int failures = 0;
    for (long n = 0; n < 200; n++) {
        budget_alloc_reset(n); /* allocation n and every later one fail */
        assert_int_equal(pc_set_allocator(&budget_allocator), 0);
        pc_server_t *s = NULL;
        int rc = pc_server_create(&cfg, &s);
        if (rc == 0) {
            pc_server_destroy(s);
            assert_int_equal(budget_alloc_live(), 0);
            assert_int_equal(pc_set_allocator(NULL), 0);
            break; /* past the last allocation of create */
        }
        failures++;
        assert_int_equal(rc, PC_ENOMEM);
        assert_int_equal(budget_alloc_live(), 0);
        assert_int_equal(pc_set_allocator(NULL), 0);
    }
    assert_true(failures >= 3);
    budget_alloc_reset(-1);
}

static void default_allocator_works(void **state)
{
    (void)state;
    char *p = pc__malloc(100);
    assert_non_null(p);
    p = pc__realloc(p, 1000);
    assert_non_null(p);
    pc__free(p);
    char *d = pc__strdup("portcullis");
    assert_string_equal(d, "portcullis");
    pc__free(d);
    pc__free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_allocator_works),
        cmocka_unit_test(counts_and_frees_everything),
        cmocka_unit_test(every_failure_is_clean),
    };
    pc_log_set_level(PC_LOG_OFF);
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
