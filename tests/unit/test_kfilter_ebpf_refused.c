/* SPDX-License-Identifier: MIT */
/* The eBPF tier's loader when the kernel's verifier refuses the program, as
 * an older kernel's may: this executable is linked with an object holding
 * the filter and a second program the verifier refuses
 * (tests/unit/bpf/kfilter_refused.bpf.c). Holding CAP_BPF, the refusal is
 * the program's, and must be reported as that, not as a missing privilege.
 * Without CAP_BPF or CAP_SYS_ADMIN the tests skip. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#ifndef PC_HAVE_EBPF
/* The tier is not built here (Windows, or no libbpf / bpf clang). */
int main(void)
{
    printf("skipped: eBPF tier not built\n");
    return 0;
}
#else

#include "portcullis.h"
#include "portcullis/filter.h"
#include "iocp/kfilter_ebpf.h"
#include "bpf_caps.h"

#include <bpf/libbpf.h>

static void need_caps(void)
{
    if (!bpf_caps_held()) {
        printf("skipped: needs CAP_BPF\n");
        skip();
    }
}

/* The loader's config in the tests that load the refused program. */
static const kf_ebpf_config_t k_cfg = {
    .source_prefix_v4 = 32, .source_prefix_v6 = 128, .source_entries = 1024};

/* Debug lines that hold the verifier's verdict on the refused program. */
static int g_verdict_lines;

static void on_log(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    if (level == PC_LOG_DEBUG && strstr(line, "invalid bpf_context access") && !strchr(line, '\n'))
        g_verdict_lines++;
}

/* The loader: PC_ENOSYS (this kernel cannot run the tier), a why that names
 * the verifier, no capability hint, nothing opened; and at debug level, as
 * the why says, the verifier's log, its verdict on a line of its own. */
static void verifier_refusal_named(void **state)
{
    (void)state;
    need_caps();
    pc_log_set_handler(on_log, NULL);
    pc_log_set_level(PC_LOG_DEBUG);
    kf_ebpf_t *k = NULL;
    char why[200] = "";
    int rc = kf_ebpf_open(&k_cfg, NULL, -1, &k, why, sizeof why);
    printf("kf_ebpf_open: %s (%s)\n", pc_err_name(rc), why);
    assert_int_equal(rc, PC_ENOSYS);
    assert_null(k);
    assert_non_null(strstr(why, "verifier"));
    assert_null(strstr(why, "CAP_"));
    pc_log_set_level(PC_LOG_INFO);
    pc_log_set_handler(NULL, NULL);
    assert_int_equal(g_verdict_lines, 1);
}

/* Loads that run at once (two servers starting, a rule swap while another
 * starts): each must see its own refusal, and the application's libbpf print
 * function must be back in place afterwards, having printed nothing of ours.
 * libbpf's print function is global to the process and each load swaps it in
 * and puts the previous one back; unserialised, one load puts back the
 * application's handler while the other is loading, the verifier's log goes
 * there, and that refusal reads as a missing privilege. Each round sets the
 * application's handler again and starts both loads together. */
enum { LOADERS = 2, ROUNDS = 16 };

static pthread_barrier_t g_round;
static int g_app_prints;

static int app_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    __atomic_add_fetch(&g_app_prints, 1, __ATOMIC_RELAXED);
    return 0;
}

static void *load_refused(void *arg)
{
    int *wrong = arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_barrier_wait(&g_round); /* the handler is the application's */
        kf_ebpf_t *k = NULL;
        char why[200] = "";
        int rc = kf_ebpf_open(&k_cfg, NULL, -1, &k, why, sizeof why);
        if (rc != PC_ENOSYS || k || !strstr(why, "verifier")) {
            printf("round %d: %s (%s)\n", i, pc_err_name(rc), why);
            (*wrong)++;
        }
        if (k) kf_ebpf_close(k, -1);
        pthread_barrier_wait(&g_round); /* both loads done */
    }
    return NULL;
}

static void concurrent_refusals_named(void **state)
{
    (void)state;
    need_caps();
    assert_int_equal(pthread_barrier_init(&g_round, NULL, LOADERS + 1), 0);
    pthread_t t[LOADERS];
    int wrong[LOADERS] = {0};
    for (int i = 0; i < LOADERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, load_refused, &wrong[i]), 0);
    libbpf_print_fn_t before = libbpf_set_print(app_print);
    int restored = 0;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_barrier_wait(&g_round);
        pthread_barrier_wait(&g_round);
        if (libbpf_set_print(app_print) == app_print) restored++;
    }
    libbpf_set_print(before);
    for (int i = 0; i < LOADERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&g_round);
    for (int i = 0; i < LOADERS; i++)
        assert_int_equal(wrong[i], 0);
    assert_int_equal(g_app_prints, 0);
    assert_int_equal(restored, ROUNDS);
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

/* Through the server: AUTO falls back from the eBPF tier (to the classic
 * one, which needs CAP_NET_ADMIN besides), and the listener's why gives the
 * verifier as the reason. */
static void server_falls_back_naming_verifier(void **state)
{
    (void)state;
    need_caps();
    const char text[] = "deny 127.0.9.0/24\n";
    pc_rules_t *r = NULL;
    char err[200];
    assert_int_equal(pc_rules_load_string(text, strlen(text), NULL, &r, err, sizeof err), 0);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = on_data;
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = r;
    pc_server_t *s = NULL;
    assert_int_equal(pc_server_create(&cfg, &s), 0); /* r is the server's now */
    assert_true(pc_server_listen(s, "127.0.0.1:0") >= 0);
    assert_int_equal(pc_server_start(s), 0);
    pc_listener_filter_t f;
    assert_int_equal(pc_server_listener_filter(s, 0, &f), 0);
    printf("tier %s: %s\n", pc_kernel_filter_name(f.tier), f.why);
    assert_int_not_equal(f.tier, PC_KERNEL_FILTER_EBPF);
    if (geteuid() == 0) assert_int_equal(f.tier, PC_KERNEL_FILTER_CBPF);
    assert_non_null(strstr(f.why, "verifier"));
    assert_null(strstr(f.why, "CAP_BPF"));
    pc_server_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verifier_refusal_named),
        cmocka_unit_test(server_falls_back_naming_verifier),
        cmocka_unit_test(concurrent_refusals_named),
    };
    return cmocka_run_group_tests_name("kfilter_ebpf_refused", tests, NULL, NULL);
}

#endif
