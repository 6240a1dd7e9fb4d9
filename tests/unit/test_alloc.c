/* The allocation seam: a counting allocator sees every allocation of a
 * server's life and every one is freed; a failing allocator makes creation
 * fail cleanly with PC_ENOMEM at every step, leaking nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <cmocka.h>

#include "portcullis.h"
#include "core/alloc.h"

/* the library allocates from worker threads too: atomic counters */
static atomic_long g_live, g_total;
static atomic_long g_fail_at = -1; /* fail the Nth allocation (0-based), -1 never */

static int should_fail(void)
{
    return g_fail_at >= 0 && g_total++ == g_fail_at;
}

static void *t_malloc(void *u, size_t n)
{
    (void)u;
    if (should_fail()) return NULL;
    if (g_fail_at < 0) g_total++;
    void *p = malloc(n);
    if (p) g_live++;
    return p;
}
static void *t_calloc(void *u, size_t n, size_t s)
{
    (void)u;
    if (should_fail()) return NULL;
    if (g_fail_at < 0) g_total++;
    void *p = calloc(n, s);
    if (p) g_live++;
    return p;
}
static void *t_realloc(void *u, void *p, size_t n)
{
    (void)u;
    if (!p) return t_malloc(u, n);
    return realloc(p, n);
}
static void t_free(void *u, void *p)
{
    (void)u;
    if (p) {
        g_live--;
        free(p);
    }
}

static const pc_allocator_t counting = {t_malloc, t_calloc, t_realloc, t_free, NULL};

static void on_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}

static void counts_and_frees_everything(void **state)
{
    (void)state;
    g_live = g_total = 0;
    g_fail_at = -1;
    assert_int_equal(pc_set_allocator(&counting), 0);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 2;
    cfg.cb.on_data = on_data;
    pc_server_t *s;
    assert_int_equal(pc_server_create(&cfg, &s), 0);
    assert_true(g_live > 0);
    /* the allocator cannot change under a live server */
    assert_int_equal(pc_set_allocator(NULL), PC_EBUSY);
    assert_true(pc_server_listen(s, "127.0.0.1:0") >= 0);
    assert_int_equal(pc_server_start(s), 0);
    assert_int_equal(pc_server_stop(s, 100), 0);
    pc_server_destroy(s);
    assert_int_equal(g_live, 0);
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
        g_live = g_total = 0;
        g_fail_at = n;
        assert_int_equal(pc_set_allocator(&counting), 0);
        pc_server_t *s = NULL;
        int rc = pc_server_create(&cfg, &s);
        if (rc == 0) {
            pc_server_destroy(s);
            assert_int_equal(g_live, 0);
            assert_int_equal(pc_set_allocator(NULL), 0);
            break; /* past the last allocation of create */
        }
        failures++;
        assert_int_equal(rc, PC_ENOMEM);
        assert_int_equal(g_live, 0);
        assert_int_equal(pc_set_allocator(NULL), 0);
    }
    assert_true(failures >= 3);
    g_fail_at = -1;
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
