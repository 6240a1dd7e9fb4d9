/* SPDX-License-Identifier: MIT */
/* The allocation seam: a counting allocator sees every allocation of a
 * server's life and every one is freed; a failing allocator makes creation
 * fail cleanly with PC_ENOMEM at every step, leaking nothing. */
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <pthread.h>
#endif

#include <cmocka.h>

#include "budget_alloc.h"

#include "portcullis.h"
#include "core/alloc.h"
#include "core/thread.h"

static void on_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}

/* A server of two workers created with every allocation counted (the
 * budget allocator, no limit). */
static pc_server_t *budget_server(void)
{
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 2;
    cfg.cb.on_data = on_data;
    pc_server_t *s;
    assert_int_equal(pc_server_create(&cfg, &s), 0);
    return s;
}

static atomic_int g_post_ran;
static void post_fn(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&g_post_ran, 1);
}

static void counts_and_frees_everything(void **state)
{
    (void)state;
    pc_server_t *s = budget_server();
    assert_true(budget_alloc_live() > 0);
    /* the allocator cannot change under a live server */
    assert_int_equal(pc_set_allocator(NULL), PC_EBUSY);
    assert_true(pc_server_listen(s, "127.0.0.1:0") >= 0);
    /* a post before the start is refused (and holds nothing); one after it
     * runs, and its record is freed */
    assert_int_equal(pc_server_post(s, post_fn, NULL), PC_ENOTCONN);
    assert_int_equal(pc_server_start(s), 0);
    atomic_store(&g_post_ran, 0);
    assert_int_equal(pc_server_post(s, post_fn, NULL), 0);
    for (int i = 0; i < 5000 && !atomic_load(&g_post_ran); i++)
        pc__sleep_ms(1);
    assert_int_equal(atomic_load(&g_post_ran), 1);
    assert_int_equal(pc_server_stop(s, 100), 0);
    pc_server_destroy(s);
    assert_int_equal(budget_alloc_live(), 0);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

static void st_fn(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
}

/* Server timers out of memory, counted by the budget allocator (whose
 * reset zeroes its live count: what was live before each reset is added
 * up in live, so the total at the end covers the server's whole life):
 * - a post or a timer without a function is refused, holding nothing;
 * - the first timer needs its record and the table of chains by id: with
 *   the record's allocation alone allowed, the call answers PC_ENOMEM and
 *   holds nothing; with none allowed, the same;
 * - a table that cannot grow stays as it is: with 128 timers (two per
 *   chain of the first table) the next one's growth fails, and the timer
 *   is armed all the same, in longer chains, and cancellable;
 * - after the stop and the destroy nothing is left, the table included. */
static void server_timers_without_memory(void **state)
{
    (void)state;
    pc_server_t *s = budget_server();
    assert_int_equal(pc_server_start(s), 0);
    pc__sleep_ms(50); /* the workers settled: nothing else allocates meanwhile */
    long live = budget_alloc_live();
    /* a post or timer without a function is refused before it takes memory */
    assert_int_equal(pc_server_post(s, NULL, NULL), PC_EINVAL);
    assert_int_equal(pc_server_timer(s, 10, 0, NULL, NULL), PC_EINVAL);
    assert_int_equal(budget_alloc_live(), live);
    budget_alloc_reset(1); /* the record, not the table */
    assert_int_equal(pc_server_timer(s, 60000, 0, st_fn, NULL), PC_ENOMEM);
    assert_int_equal(budget_alloc_failed(), 1);
    assert_int_equal(budget_alloc_live(), 0);
    budget_alloc_reset(0);
    assert_int_equal(pc_server_timer(s, 60000, 0, st_fn, NULL), PC_ENOMEM);
    assert_int_equal(budget_alloc_live(), 0);
    budget_alloc_reset(-1);
    enum { N = 128 };
    int64_t ids[N + 1];
    for (int i = 0; i < N; i++) {
        ids[i] = pc_server_timer(s, 60000, 0, st_fn, NULL);
        assert_true(ids[i] > 0);
    }
    live += budget_alloc_live();
    budget_alloc_reset(1); /* the record, not the larger table */
    ids[N] = pc_server_timer(s, 60000, 0, st_fn, NULL);
    assert_true(ids[N] > 0);
    assert_int_equal(budget_alloc_failed(), 1);
    live += budget_alloc_live();
    budget_alloc_reset(-1);
    for (int i = 0; i <= N; i += 2)
        assert_int_equal(pc_server_timer_cancel(s, ids[i]), 0);
    assert_int_equal(pc_server_timer_cancel(s, ids[N]), PC_ENOENT); /* cancelled above */
    /* the odd ones are left for the stop */
    assert_int_equal(pc_server_stop(s, 100), 0);
    pc_server_destroy(s);
    live += budget_alloc_live();
    assert_int_equal(live, 0);
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

/* What a user allocator is promised, with a malloc that neither zeroes nor
 * takes 0 bytes (a C malloc may answer 0 with NULL, which would read as out
 * of memory): its user pointer with every call, no request of 0 bytes, no
 * free of NULL, a calloc made from its malloc that zeroes the block, a
 * whole string from pc__strdup. */
static int g_tag;
static size_t g_least; /* the fewest bytes asked of the user's malloc or realloc */
static size_t g_asked; /* the bytes asked of the user's malloc last */
static int g_wrong_user, g_null_frees;

static void *dirty_malloc(void *u, size_t n)
{
    if (u != &g_tag) g_wrong_user++;
    if (n < g_least) g_least = n;
    g_asked = n;
    if (n == 0) return NULL;
    /* a few bytes more than asked, all dirty: a read past the n bytes
     * (a string without its terminator) finds no zero there */
    void *p = own_malloc(NULL, n + 8);
    if (p) memset(p, 0xa5, n + 8);
    return p;
}
static void *dirty_realloc(void *u, void *q, size_t n)
{
    if (u != &g_tag) g_wrong_user++;
    if (n < g_least) g_least = n;
    if (n == 0) return NULL;
    return own_realloc(NULL, q, n);
}
static void checked_free(void *u, void *q)
{
    if (u != &g_tag) g_wrong_user++;
    if (!q) {
        g_null_frees++;
        return;
    }
    own_free(NULL, q);
}

static void user_allocator_promises(void **state)
{
    (void)state;
    g_own_frees = g_foreign_frees = g_wrong_user = g_null_frees = 0;
    g_least = SIZE_MAX;
    pc_allocator_t a = {dirty_malloc, NULL, dirty_realloc, checked_free, &g_tag};
    assert_int_equal(pc_set_allocator(&a), 0);
    unsigned char *p = pc__calloc(10, 10);
    assert_non_null(p);
    assert_int_equal(g_asked, 100); /* all of it asked for, not one of the 10 */
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 0);
    pc__free(p);
    char *d = pc__strdup("portcullis");
    assert_non_null(d);
    assert_string_equal(d, "portcullis");
    pc__free(d);
    void *z = pc__malloc(0);
    assert_non_null(z);
    z = pc__realloc(z, 0);
    assert_non_null(z);
    pc__free(z);
    z = pc__calloc(0, 0);
    assert_non_null(z);
    pc__free(z);
    pc__free(NULL);
    assert_int_equal(pc_set_allocator(NULL), 0);
    assert_int_equal(g_wrong_user, 0);
    assert_int_equal(g_null_frees, 0);
    assert_true(g_least >= 1);
    assert_int_equal(g_foreign_frees, 0);
    assert_int_equal(g_own_frees, 4);
}

/* A calloc given with the set is the one used: not the set's malloc and a
 * memset. A calloc alone is no set (nothing to free its blocks with): it is
 * refused, not taken for "all NULL", the default. */
static int g_callocs;
static void *counting_calloc(void *u, size_t n, size_t sz)
{
    (void)u;
    g_callocs++;
    if (sz && n > SIZE_MAX / sz) return NULL;
    void *p = own_malloc(NULL, n * sz);
    if (p) memset(p, 0, n * sz);
    return p;
}

static void user_calloc_used(void **state)
{
    (void)state;
    g_own_frees = g_foreign_frees = g_callocs = 0;
    pc_allocator_t a = {own_malloc, counting_calloc, own_realloc, own_free, NULL};
    assert_int_equal(pc_set_allocator(&a), 0);
    void *p = pc__calloc(4, 8);
    assert_non_null(p);
    pc__free(p);
    assert_int_equal(pc_set_allocator(NULL), 0);
    assert_int_equal(g_callocs, 1);
    assert_int_equal(g_own_frees, 1);
    assert_int_equal(g_foreign_frees, 0);
    pc_allocator_t alone = {NULL, counting_calloc, NULL, NULL, NULL};
    assert_int_equal(pc_set_allocator(&alone), PC_EINVAL);
}

#ifdef __linux__
/* A thread's name, cut to the 15 characters Linux keeps, reaches it whole
 * from a start record whose block the user's malloc left dirty (a name
 * copied without its terminator ran on into the junk, and Linux refused
 * it); a thread started without a name keeps the one it inherits, not an
 * empty one. Not on Windows (no pthread_getname_np). */
static char g_name[16];
static void read_name(void *arg)
{
    (void)arg;
    pthread_getname_np(pthread_self(), g_name, sizeof g_name);
}

static void thread_name_from_dirty_block(void **state)
{
    (void)state;
    char inherited[16];
    assert_int_equal(pthread_getname_np(pthread_self(), inherited, sizeof inherited), 0);
    pc_allocator_t a = {dirty_malloc, NULL, dirty_realloc, checked_free, &g_tag};
    assert_int_equal(pc_set_allocator(&a), 0);
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, read_name, NULL, "a-name-longer-than-15"), 0);
    pc__thread_join(t);
    assert_string_equal(g_name, "a-name-longer-t");
    memset(g_name, 0, sizeof g_name);
    assert_int_equal(pc__thread_start(&t, read_name, NULL, NULL), 0);
    pc__thread_join(t);
    assert_int_equal(pc_set_allocator(NULL), 0);
    assert_string_equal(g_name, inherited);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_allocator_works),
        cmocka_unit_test(counts_and_frees_everything),
        cmocka_unit_test(every_failure_is_clean),
        cmocka_unit_test(server_timers_without_memory),
        cmocka_unit_test(partial_allocator_never_mixes),
        cmocka_unit_test(user_allocator_promises),
        cmocka_unit_test(user_calloc_used),
#ifdef __linux__
        cmocka_unit_test(thread_name_from_dirty_block),
#endif
    };
    pc_log_set_level(PC_LOG_OFF);
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
