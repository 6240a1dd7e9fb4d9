/* SPDX-License-Identifier: MIT */
/* The allocation seam: a counting allocator sees every allocation of a
 * server's life and every one is freed; a failing allocator makes creation
 * fail cleanly with PC_ENOMEM at every step, leaking nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

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

/* A user allocator that knows its own blocks: every block it frees must be
 * one it handed out (a tag before the block), else the hooks were mixed. */
static int g_own_frees, g_foreign_frees;

static void *own_malloc(void *u, size_t n)
{
    (void)u;
    size_t *p = malloc(n + 16);
    if (!p) return NULL;
    p[0] = 0x6f776e6564u; /* "owned" */
    return (char *)p + 16;
}
static void *own_realloc(void *u, void *q, size_t n)
{
    (void)u;
    if (!q) return own_malloc(u, n);
    size_t *p = realloc((char *)q - 16, n + 16);
    return p ? (char *)p + 16 : NULL;
}
static void own_free(void *u, void *q)
{
    (void)u;
    if (!q) return;
    size_t *p = (size_t *)(void *)((char *)q - 16);
    if (p[0] != 0x6f776e6564u) {
        g_foreign_frees++; /* not ours: leaked, freeing it would corrupt the heap */
        return;
    }
    g_own_frees++;
    p[0] = 0;
    free(p);
}

/* A set with some hooks NULL kept the default (mimalloc) for those: with
 * malloc and free replaced, pc__calloc's block came from mimalloc and went
 * to the user's free, and a set with free alone freed mimalloc's blocks.
 * Now calloc falls back to the user's malloc, and a set that cannot be
 * completed from its own hooks (free without malloc, malloc without free
 * or realloc, calloc or realloc alone) is refused. */
static void partial_allocator_never_mixes(void **state)
{
    (void)state;
    g_own_frees = g_foreign_frees = 0;
    pc_allocator_t a = {own_malloc, NULL, own_realloc, own_free, NULL};
    assert_int_equal(pc_set_allocator(&a), 0);
    unsigned char *p = pc__calloc(10, 10);
    assert_non_null(p);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 0);
    p = pc__realloc(p, 1000);
    assert_non_null(p);
    pc__free(p);
    assert_int_equal(pc__calloc((size_t)-1 / 2, 4), NULL); /* n * size overflows */
    assert_int_equal(pc_set_allocator(NULL), 0);
    assert_int_equal(g_foreign_frees, 0);
    assert_int_equal(g_own_frees, 1);

    const pc_allocator_t bad[] = {
        {NULL, NULL, NULL, own_free, NULL},          /* frees what mimalloc allocated */
        {own_malloc, NULL, own_realloc, NULL, NULL}, /* mimalloc frees the user's */
        {own_malloc, NULL, NULL, own_free, NULL},    /* mimalloc reallocs the user's */
        {NULL, NULL, own_realloc, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pc_set_allocator(&bad[i]), PC_EINVAL);
    /* refused: the allocator in force stays */
    char *d = pc__malloc(8);
    assert_non_null(d);
    pc__free(d);
    assert_int_equal(g_foreign_frees, 0);
    assert_int_equal(g_own_frees, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_allocator_works),
        cmocka_unit_test(counts_and_frees_everything),
        cmocka_unit_test(every_failure_is_clean),
        cmocka_unit_test(partial_allocator_never_mixes),
    };
    pc_log_set_level(PC_LOG_OFF);
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
