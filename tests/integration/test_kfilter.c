/* SPDX-License-Identifier: MIT */
/* The listener's kernel filter (Linux, root: attaching a filter to a TCP
 * socket needs CAP_NET_ADMIN; skipped with a message otherwise). A denied
 * source gets no SYN-ACK: its connect times out, it is neither refused nor
 * reset, and user space never sees it (no rule hit, no open); an allowed
 * source is served. IPv6 on a [::1] listener; reloads (adding a deny, a set
 * too big for classic BPF, a bad file); the tier reported in the stats. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "budget_alloc.h"
#include "harness.h"
#include "pick.h"

/* How long a denied connect is given: the SYN is dropped, so nothing comes
 * back; a reply (SYN-ACK or RST) on loopback takes microseconds. */
#define DENIED_WAIT_MS 600

enum { C_OK = 0, C_TIMEOUT = 1, C_REFUSED = 2, C_OTHER = 3, C_RESET = 4 };

/* Connect from src to dst:port (family by dst), waiting ms: C_OK (fd in *out,
 * or closed if out NULL), C_TIMEOUT (no answer), C_REFUSED (RST). */
static int try_connect(const char *src, const char *dst, int port, int ms, int *out)
{
    struct sockaddr_storage sa, la;
    memset(&sa, 0, sizeof sa);
    memset(&la, 0, sizeof la);
    socklen_t len;
    int v6 = strchr(dst, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&sa, *l = (struct sockaddr_in6 *)&la;
        d->sin6_family = l->sin6_family = AF_INET6;
        d->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, dst, &d->sin6_addr), 1);
        assert_int_equal(inet_pton(AF_INET6, src, &l->sin6_addr), 1);
        len = sizeof *d;
    } else {
        struct sockaddr_in *d = (struct sockaddr_in *)&sa, *l = (struct sockaddr_in *)&la;
        d->sin_family = l->sin_family = AF_INET;
        d->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, dst, &d->sin_addr), 1);
        assert_int_equal(inet_pton(AF_INET, src, &l->sin_addr), 1);
        len = sizeof *d;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&la, len), 0);
    int rc = connect(fd, (struct sockaddr *)&sa, len);
    int res = C_OTHER;
    if (rc == 0) {
        res = C_OK;
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int n = poll(&p, 1, ms);
        if (n == 0) {
            res = C_TIMEOUT;
        } else {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
            res = err == 0              ? C_OK
                  : err == ECONNREFUSED ? C_REFUSED
                  : err == ECONNRESET   ? C_RESET /* established, then reset at once */
                                        : C_OTHER;
            errno = err;
        }
    } else if (errno == ECONNREFUSED) {
        res = C_REFUSED;
    }
    if (res == C_OK && out) {
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        *out = fd;
    } else {
        close(fd);
    }
    return res;
}

/* Served: connects and gets its bytes echoed. */
static void expect_served(const char *src, const char *dst, int port)
{
    int fd = -1;
    int r = try_connect(src, dst, port, 5000, &fd);
    if (r != C_OK) fail_msg("%s -> %s: not served (%d, errno %d)", src, dst, r, errno);
    shim_set_timeout(fd, 5000);
    expect_echo(fd, "through the filter");
    close(fd);
}

static void expect_dropped(const char *src, const char *dst, int port)
{
    int r = try_connect(src, dst, port, DENIED_WAIT_MS, NULL);
    if (r != C_TIMEOUT)
        fail_msg("%s -> %s: expected no answer to the SYN, got %s", src, dst,
                 r == C_OK        ? "a connection"
                 : r == C_REFUSED ? "a reset"
                                  : "an error");
}

/* src has reached its per-source maximum: its next SYN is dropped in the
 * kernel once the accept thread has marked it, which it does after handing
 * the last connection over (so that connection's echo can come first, and
 * a busy machine can hold the thread back): tried again for up to 5 s. */
static void expect_marked(const char *src, const char *dst, int port)
{
    for (uint64_t end = shim_now_ms() + 5000; shim_now_ms() < end;) {
        if (try_connect(src, dst, port, 50, NULL) == C_TIMEOUT) return;
        shim_sleep_ms(10);
    }
    fail_msg("%s at its maximum: its SYNs to %s still answered after 5 s", src, dst);
}

/* Denied after the handshake (no kernel filter): connected, then reset or
 * closed without an echo. */
static void expect_reset_after_handshake(const char *src, const char *dst, int port)
{
    int fd = -1;
    int c = try_connect(src, dst, port, 5000, &fd);
    if (c == C_RESET) return; /* the reset beat the connect's wake-up */
    assert_int_equal(c, C_OK);
    shim_set_timeout(fd, 5000);
    size_t n = 0;
    int r = shim_wait_close(fd, &n);
    assert_true(r == 0 || r == -1); /* FIN or reset, not a timeout */
    assert_int_equal(n, 0);
    close(fd);
}

static int need_root(void)
{
    if (geteuid() == 0) return 1;
    print_message("SKIPPED: attaching a socket filter to a TCP socket needs CAP_NET_ADMIN "
                  "(run as root); tests/process/kernel_filter.py covers the unprivileged "
                  "fallback\n");
    return 0;
}

static pc_rules_t *rules_from(const char *text)
{
    pc_rules_t *r = NULL;
    char err[256];
    if (pc_rules_load_string(text, strlen(text), "test", &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    return r;
}

static pc_listener_filter_t listener_filter(int idx)
{
    pc_listener_filter_t kf;
    assert_int_equal(pc_server_listener_filter(g_srv, idx, &kf), 0);
    return kf;
}

/* The tier a test asks for (cmocka prestate), AUTO when none. */
static pc_kernel_filter_t tier_of(void **state)
{
    return *state ? *(const pc_kernel_filter_t *)*state : PC_KERNEL_FILTER_AUTO;
}

static pc_kernel_filter_t k_ebpf = PC_KERNEL_FILTER_EBPF, k_cbpf = PC_KERNEL_FILTER_CBPF;

/* A cmocka test entry running f with the tier t asked. */
#define TIER_TEST(name, f, t)         \
    {                                 \
        name, f, NULL, teardown, &(t) \
    }

/* The asked tier is in force (AUTO: any kernel tier); an eBPF tier not built
 * in skips. */
static void expect_tier(int idx, pc_kernel_filter_t want)
{
    pc_listener_filter_t kf = listener_filter(idx);
    if (want == PC_KERNEL_FILTER_EBPF && kf.tier != want && strstr(kf.why, "not built")) {
        print_message("SKIPPED: %s\n", kf.why);
        skip();
    }
    if (want == PC_KERNEL_FILTER_AUTO) {
        if (kf.tier == PC_KERNEL_FILTER_OFF) fail_msg("no kernel tier: %s", kf.why);
    } else if (kf.tier != want) {
        fail_msg("asked %s, running %s: %s", pc_kernel_filter_name(want),
                 pc_kernel_filter_name(kf.tier), kf.why);
    }
    /* a tier in force as asked (or eBPF, the best) has no reason to give:
     * one left over from an earlier failed reload would be stale */
    if ((kf.tier == want || kf.tier == PC_KERNEL_FILTER_EBPF) && kf.why[0])
        fail_msg("%s in force, yet the reason says: %s", pc_kernel_filter_name(kf.tier), kf.why);
    /* the eBPF tier's maps and program hold kernel memory; no other tier
     * reports any */
    if (kf.tier == PC_KERNEL_FILTER_EBPF && kf.kernel_bytes == 0)
        fail_msg("eBPF tier in force, kernel_bytes 0");
    if (kf.tier != PC_KERNEL_FILTER_EBPF && kf.kernel_bytes != 0)
        fail_msg("%s tier, kernel_bytes %llu", pc_kernel_filter_name(kf.tier),
                 (unsigned long long)kf.kernel_bytes);
    /* the stats sum it over the listeners */
    pc_server_stats_t st;
    pc_server_stats(g_srv, &st);
    if (st.kernel_filter_bytes < kf.kernel_bytes)
        fail_msg("stats kernel_filter_bytes %llu, listener %d alone %llu",
                 (unsigned long long)st.kernel_filter_bytes, idx,
                 (unsigned long long)kf.kernel_bytes);
}

/* An accepted socket took off the filter it inherited from the listener
 * (else the program ran on each segment it received and its rule set
 * stayed in the kernel while the connection lived): SO_GET_FILTER reports no
 * filter (a classic one: its length; an eBPF one: EACCES). */
static void expect_no_inherited_filter(void)
{
    int cfd = -1;
    assert_int_equal(try_connect("127.0.0.1", "127.0.0.1", g_port, 5000, &cfd), C_OK);
    shim_set_timeout(cfd, 5000);
    assert_int_equal(shim_send_all(cfd, "x", 1), 0); /* echoed: the worker has started it */
    char c = 0;
    assert_int_equal(shim_recv_exact(cfd, &c, 1), 1);
    socklen_t len = 0;
    int rc = getsockopt(server_end(cfd), SOL_SOCKET, SO_GET_FILTER, NULL, &len);
    if (rc != 0) fail_msg("SO_GET_FILTER on the accepted socket: %s", strerror(errno));
    assert_int_equal(len, 0);
    close(cfd);
}

static const char k_issue_rules[] = "deny 127.0.0.2/32\n"
                                    "deny 127.0.9.0/24\n"
                                    "allow 127.0.0.0/8\n";

static void drop_v4(void **state)
{
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = tier_of(state);
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    expect_tier(0, cfg.kernel_filter);
    pc_listener_filter_t kf = listener_filter(0);
    if (kf.tier == PC_KERNEL_FILTER_CBPF) assert_true(kf.insns > 4);
    pc_server_stats_t st = stats();
    assert_int_equal(st.accept_mode, PC_ACCEPT_MODE_KERNEL);
    assert_int_equal(st.kernel_filter, kf.tier);

    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_dropped("127.0.9.7", "127.0.0.1", g_port);
    expect_served("127.0.0.1", "127.0.0.1", g_port);
    expect_served("127.0.8.1", "127.0.0.1", g_port); /* beside the denied /24 */
    /* user space never saw the denied ones */
    WAIT_FOR(atomic_load(&g_opens) == 2, 2000);
    st = stats();
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.rejected[PC_STEP_RULES], 0);
    assert_int_equal(atomic_load(&g_opens), 2);
    expect_no_inherited_filter();
    /* once stopped, no tier is in force: the stats and the listener say so */
    assert_int_equal(pc_server_stop(g_srv, 2000), 0);
    st = stats();
    assert_int_equal(st.kernel_filter, PC_KERNEL_FILTER_OFF);
    assert_int_equal(st.accept_mode, PC_ACCEPT_MODE_POST_HANDSHAKE);
    assert_int_equal(st.kernel_filter_bytes, 0);
    kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    assert_string_equal(kf.why, "the listener is closed");
    assert_int_equal(kf.insns, 0);
    assert_int_equal(kf.kernel_bytes, 0);
    /* a reload after the stop reaches no closed listener: nothing tried on
     * its socket, the tier and the reason stay */
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.0.3\n")), 0);
    kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    assert_string_equal(kf.why, "the listener is closed");
    assert_int_equal(stats().kernel_filter, PC_KERNEL_FILTER_OFF);
}

/* An IPv6 listener: [::1] denied; another set leaves it served. */
static void drop_v6(void **state)
{
    (void)state;
    if (!need_root()) skip();
    if (!shim_have_ipv6()) {
        print_message("SKIPPED: no IPv6 loopback\n");
        skip();
    }
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = rules_from("deny ::1/128\ndeny 127.0.0.2/32\n");
    int port = start_server_on(&cfg, "[::1]:0");
    int idx = 0; /* the only listener */
    assert_int_not_equal(listener_filter(idx).tier, PC_KERNEL_FILTER_OFF);
    expect_dropped("::1", "::1", port);
    assert_int_equal(stats().rejected[PC_STEP_RULES], 0);

    /* the IPv6 tree lets others through: ::1 allowed inside a denied ::/0 */
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny ::/0\nallow ::1/128\n")), 0);
    assert_int_not_equal(listener_filter(idx).tier, PC_KERNEL_FILTER_OFF);
    expect_served("::1", "::1", port);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny ::/1\n")), 0);
    expect_dropped("::1", "::1", port);
}

/* head, then n isolated /32 denies in 10.0.0.0/8 (n < 62500): 2n + 1
 * ranges, each a few classic BPF instructions. */
static pc_rules_t *isolated_v4_denies(unsigned n, const char *head)
{
    size_t cap = strlen(head) + (size_t)n * 24 + 1, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text, cap, "%s", head);
    for (unsigned i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "deny 10.%u.%u.1\n", i / 250, i % 250);
    pc_rules_t *r = NULL;
    char err[256];
    if (pc_rules_load_string(text, len, "big", &r, err, sizeof err) != 0) fail_msg("%s", err);
    free(text);
    return r;
}

/* Reload: a new deny takes effect in the kernel; a bad file changes nothing;
 * a set too big for classic BPF drops the kernel tier (user space judges
 * after the handshake, reported) and a small one brings it back. */
static void reload(void **state)
{
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = tier_of(state);
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    expect_tier(0, cfg.kernel_filter);
    expect_served("127.0.0.6", "127.0.0.1", g_port);

    char text[256];
    snprintf(text, sizeof text, "%sdeny 127.0.0.6\n", k_issue_rules);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from(text)), 0);
    expect_tier(0, cfg.kernel_filter);
    expect_dropped("127.0.0.6", "127.0.0.1", g_port);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_served("127.0.0.1", "127.0.0.1", g_port);

    /* a bad file: refused before the server sees it, everything stays */
    pc_rules_t *bad = NULL;
    char err[256];
    const char *bt = "deny 127.0.0.7\nallow 127.0.0.0/40\n";
    assert_int_equal(pc_rules_load_string(bt, strlen(bt), "bad", &bad, err, sizeof err), PC_EPARSE);
    assert_null(bad);
    pc_listener_filter_t before = listener_filter(0);
    expect_dropped("127.0.0.6", "127.0.0.1", g_port);
    expect_served("127.0.0.7", "127.0.0.1", g_port);
    assert_int_equal(listener_filter(0).tier, before.tier);

    /* too big for classic BPF (without the eBPF tier): AUTO runs without */
    assert_int_equal(pc_server_set_rules(g_srv, isolated_v4_denies(3000, "deny 127.0.0.6\n")), 0);
    pc_listener_filter_t kf = listener_filter(0);
    if (kf.tier == PC_KERNEL_FILTER_CBPF) fail_msg("3001 isolated /32s fitted classic BPF");
    if (cfg.kernel_filter == PC_KERNEL_FILTER_EBPF) {
        assert_int_equal(kf.tier, PC_KERNEL_FILTER_EBPF); /* maps hold it */
        expect_dropped("127.0.0.6", "127.0.0.1", g_port);
        expect_served("127.0.0.2", "127.0.0.1", g_port);
    }
    if (cfg.kernel_filter == PC_KERNEL_FILTER_CBPF) {
        assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
        /* 6000 ranges, beyond 4096 instructions by far: not counted exactly */
        if (!strstr(kf.why, "needs at least ")) fail_msg("not a lower bound: %s", kf.why);
    }
    if (kf.tier == PC_KERNEL_FILTER_OFF) {
        assert_non_null(strstr(kf.why, "instructions"));
        assert_int_equal(stats().accept_mode, PC_ACCEPT_MODE_POST_HANDSHAKE);
        uint64_t rej = stats().rejected[PC_STEP_RULES];
        expect_reset_after_handshake("127.0.0.6", "127.0.0.1", g_port);
        WAIT_FOR(stats().rejected[PC_STEP_RULES] == rej + 1, 2000);
        assert_int_equal(stats().rejected[PC_STEP_RULES], rej + 1);
        expect_served("127.0.0.2", "127.0.0.1", g_port); /* the new set no longer denies it */
    }
    if (cfg.kernel_filter == PC_KERNEL_FILTER_CBPF) {
        /* 2047 /32s, 4095 ranges: counted exactly, and over */
        assert_int_equal(pc_server_set_rules(g_srv, isolated_v4_denies(2047, "")), 0);
        kf = listener_filter(0);
        assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
        if (!strstr(kf.why, "needs ") || strstr(kf.why, "at least"))
            fail_msg("not an exact count: %s", kf.why);
    }
    /* a small set again: the kernel tier is back */
    assert_int_equal(pc_server_set_rules(g_srv, rules_from(k_issue_rules)), 0);
    expect_tier(0, cfg.kernel_filter);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_served("127.0.0.6", "127.0.0.1", g_port);
    /* no rules at all: nothing dropped */
    assert_int_equal(pc_server_set_rules(g_srv, NULL), 0);
    expect_served("127.0.0.2", "127.0.0.1", g_port);
}

/* Reload of a large IPv6 set on the classic tier: SO_ATTACH_FILTER charges
 * the new program to the socket's option memory (net.core.optmem_max)
 * before it uncharges the old one, so a reload needs room for both (128 KiB
 * held about 2200 instructions of an IPv6 program twice). 180 isolated
 * /128s (near the 184 that fit in 4096 instructions) attach at start;
 * reloading the very same set keeps the tier. */
static void reload_cbpf_large_v6(void **state)
{
    (void)state;
    if (!need_root()) skip();
    if (!shim_have_ipv6()) {
        print_message("SKIPPED: no IPv6 loopback\n");
        skip();
    }
    size_t cap = 180 * 64 + 64, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "deny ::1/128\n");
    for (unsigned i = 1; i < 180; i++)
        len += (size_t)snprintf(text + len, cap - len, "deny 2001:db8:%x:%x::%x:%x/128\n", i * 7,
                                i * 13, i * 31, i);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_CBPF;
    cfg.rules = rules_from(text);
    int port = start_server_on(&cfg, "[::1]:0");
    expect_tier(0, PC_KERNEL_FILTER_CBPF);
    unsigned insns = listener_filter(0).insns;
    expect_dropped("::1", "::1", port);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(pc_server_set_rules(g_srv, rules_from(text)), 0);
        pc_listener_filter_t kf = listener_filter(0);
        if (kf.tier != PC_KERNEL_FILTER_CBPF)
            fail_msg("reload %d of the same %u-instruction set: tier %s: %s", round, insns,
                     pc_kernel_filter_name(kf.tier), kf.why);
        expect_dropped("::1", "::1", port);
    }
    /* a v6-only listener (the library's are) sees no IPv4 SYN: its program
     * has no IPv4 part, and IPv4 rules add no instruction to it */
    size_t cap4 = len + 64;
    char *text4 = malloc(cap4);
    assert_non_null(text4);
    snprintf(text4, cap4, "%sdeny 10.0.0.0/8\ndeny 192.0.2.7\n", text);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from(text4)), 0);
    expect_tier(0, PC_KERNEL_FILTER_CBPF);
    assert_int_equal(listener_filter(0).insns, insns);
    free(text4);
    free(text);
}

/* Asked off, or classic BPF asked in shadow mode: no kernel filter, the
 * reason reported, denied clients reset after the handshake. */
static void off_and_shadow(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_OFF;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    pc_listener_filter_t kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    assert_string_equal(kf.why, "");
    assert_int_equal(stats().accept_mode, PC_ACCEPT_MODE_POST_HANDSHAKE);
    assert_int_equal(stats().kernel_filter, PC_KERNEL_FILTER_OFF);
    expect_reset_after_handshake("127.0.0.2", "127.0.0.1", g_port);
    WAIT_FOR(stats().rejected[PC_STEP_RULES] == 1, 2000);
    assert_int_equal(stats().rejected[PC_STEP_RULES], 1);
    teardown(NULL);

    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_CBPF;
    cfg.shadow = 1;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    assert_non_null(strstr(kf.why, "shadow"));
    expect_served("127.0.0.2", "127.0.0.1", g_port); /* shadow: counted, let through */
    WAIT_FOR(stats().would_reject[PC_STEP_RULES] == 1, 2000);
    assert_int_equal(stats().would_reject[PC_STEP_RULES], 1);
}

/* The classic program's compile runs out of memory on a reload: the tier
 * goes off with that reason (nothing is attached: the compile's error is
 * not taken to the kernel), and the old program goes with it. */
static void cbpf_compile_out_of_memory(void **state)
{
    (void)state;
    if (!need_root()) skip();
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_CBPF;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_CBPF);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    pc_rules_t *next = rules_from("deny 127.0.0.3\n");
    budget_alloc_reset(0); /* no allocation succeeds from here */
    int rc = pc_server_set_rules(g_srv, next);
    long failed = budget_alloc_failed();
    budget_alloc_reset(-1);
    assert_int_equal(rc, 0); /* the server took the set: user space judges with it */
    assert_true(failed >= 1);
    pc_listener_filter_t kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    char want[160];
    snprintf(want, sizeof want, "cbpf: %s", pc_strerror(PC_ENOMEM));
    assert_string_equal(kf.why, want);
    expect_served("127.0.0.2", "127.0.0.1", g_port); /* the old program is off */
    teardown(NULL);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

/* Explicit classic tier: in force, and an accepted connection (which
 * inherits the listener's filter) carries a large echo both ways. */
static void explicit_cbpf_accepted_sockets(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_CBPF;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    pc_listener_filter_t kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_CBPF);
    assert_string_equal(kf.why, "");
    assert_int_equal(stats().kernel_filter, PC_KERNEL_FILTER_CBPF);
    int fd = -1;
    assert_int_equal(try_connect("127.0.0.1", "127.0.0.1", g_port, 5000, &fd), C_OK);
    shim_set_timeout(fd, 10000);
    size_t n = 1 << 20;
    unsigned char *out = malloc(n), *in = malloc(n);
    assert_non_null(out);
    assert_non_null(in);
    fill_pattern(out, 0, n);
    for (size_t off = 0; off < n; off += 64 << 10) {
        assert_int_equal(shim_send_all(fd, out + off, 64 << 10), 0);
        assert_int_equal(shim_recv_exact(fd, in + off, 64 << 10), 64 << 10);
    }
    assert_memory_equal(in, out, n);
    free(out);
    free(in);
    close(fd);
}

/* The hit of the rule that denied src (pc_server_top_rules), 0 if absent. */
static uint64_t rule_hits(const char *text)
{
    pc_rule_info_t top[16];
    int n = pc_server_top_rules(g_srv, top, 16);
    for (int i = 0; i < n; i++)
        if (strstr(top[i].text, text)) return top[i].hits;
    return 0;
}

/* The eBPF tier counts what it drops: per rule (pc_server_top_rules, kept
 * across a reload), per cause in the stats; in shadow mode it passes and
 * counts. */
static void ebpf_counts(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_dropped("127.0.9.7", "127.0.0.1", g_port);
    expect_served("127.0.0.1", "127.0.0.1", g_port);
    /* a dropped SYN may be retransmitted once before the client gives up */
    uint64_t h2 = rule_hits("127.0.0.2"), h9 = rule_hits("127.0.9.0/24");
    if (h2 < 2 || h9 < 1)
        fail_msg("kernel drops not in the rules' hits: %llu, %llu", (unsigned long long)h2,
                 (unsigned long long)h9);
    pc_server_stats_t st = stats();
    assert_true(st.kernel_dropped_rules >= 3);
    assert_int_equal(st.kernel_dropped_rules, h2 + h9);
    assert_true(st.kernel_syn_seen >= st.kernel_dropped_rules + 1);
    assert_int_equal(st.kernel_dropped_rate + st.kernel_dropped_max + st.kernel_would_drop, 0);
    assert_int_equal(st.rejected[PC_STEP_RULES], 0); /* user space saw none */

    /* a reload carries the hits over and keeps counting */
    char text[256];
    snprintf(text, sizeof text, "%sdeny 127.0.0.6\n", k_issue_rules);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from(text)), 0);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    expect_dropped("127.0.0.6", "127.0.0.1", g_port);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    assert_true(rule_hits("127.0.0.6") >= 1);
    assert_true(rule_hits("127.0.0.2") >= h2 + 1);
    assert_true(stats().kernel_dropped_rules >= st.kernel_dropped_rules + 2);
    /* drops not folded yet when the listener closes: folded by the close */
    expect_dropped("127.0.0.6", "127.0.0.1", g_port);
    assert_int_equal(pc_server_stop(g_srv, 2000), 0);
    uint64_t all = rule_hits("127.0.0.2") + rule_hits("127.0.9.0/24") + rule_hits("127.0.0.6");
    if (all != stats().kernel_dropped_rules)
        fail_msg("after the stop: %llu hits, %llu kernel drops", (unsigned long long)all,
                 (unsigned long long)stats().kernel_dropped_rules);
    teardown(NULL);

    /* shadow: the kernel counts and passes; user space counts the verdict */
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.shadow = 1;
    cfg.rules = rules_from(k_issue_rules);
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    expect_served("127.0.0.2", "127.0.0.1", g_port);
    expect_served("127.0.9.7", "127.0.0.1", g_port);
    WAIT_FOR(stats().would_reject[PC_STEP_RULES] == 2, 2000);
    st = stats();
    assert_int_equal(st.would_reject[PC_STEP_RULES], 2);
    assert_int_equal(st.kernel_would_drop, 2);
    assert_int_equal(st.kernel_dropped_rules, 0);
}

/* The eBPF tier asked, 3 new connections a second per source, burst 3. */
static void ebpf_rate3_config(pc_server_config_t *cfg)
{
    base_config(cfg);
    cfg->kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg->per_source_rate = 3;
    cfg->per_source_burst = 3;
}

/* per_source_max with a trusted proxy: the kernel marks no source at its
 * maximum, as a mark covers the source's whole prefix group (here /24),
 * which may hold the proxy: a direct client at its maximum must not cost
 * the proxy's clients their SYN-ACKs. */
static void ebpf_max_exempt_shares_prefix(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.per_source_max = 2;
    cfg.source_prefix_v4 = 24;
    cfg.proxy_trusted = rules_from("allow 127.0.0.1\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(listener_filter(0).per_source, 0);
    int direct[2];
    for (int i = 0; i < 2; i++) { /* 127.0.0.0/24 at its maximum */
        assert_int_equal(try_connect("127.0.0.5", "127.0.0.1", g_port, 2000, &direct[i]), C_OK);
        shim_set_timeout(direct[i], 5000);
        expect_echo(direct[i], "direct");
    }
    int fd = -1;
    int r = try_connect("127.0.0.1", "127.0.0.1", g_port, DENIED_WAIT_MS, &fd);
    if (r != C_OK) fail_msg("the proxy's SYN not answered (%d)", r);
    const char *hdr = "PROXY TCP4 10.7.0.1 127.0.0.1 4000 80\r\n";
    shim_set_timeout(fd, 5000);
    assert_int_equal(shim_send_all(fd, hdr, strlen(hdr)), 0);
    expect_echo(fd, "behind the balancer");
    close(fd);
    /* the third direct one is over the maximum: after the accept */
    expect_reset_after_handshake("127.0.0.5", "127.0.0.1", g_port);
    pc_server_stats_t st = stats();
    assert_int_equal(st.kernel_dropped_max, 0);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_MAX], 1);
    for (int i = 0; i < 2; i++)
        close(direct[i]);
}

/* The kernel's per-source rate is the server's, as the accept thread's is:
 * a source that spent its burst on one listener gets no SYN-ACK from
 * another. Each listener's program had its own buckets, so N listeners let N
 * bursts through, the excess reset by user space after the handshake. The
 * second listener's kernel bytes leave out the maps it shares. */
static void ebpf_rate_across_listeners(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.per_source_rate = 0.01; /* a burst of 3, no refill during the test */
    cfg.per_source_burst = 3;
    create_server_on(&cfg, "127.0.0.1:0");
    int idx = pc_server_listen(g_srv, "127.0.0.1:0");
    assert_int_equal(idx, 1);
    assert_int_equal(pc_server_start(g_srv), 0);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    expect_tier(idx, PC_KERNEL_FILTER_EBPF);
    int port2 = pc_server_listener_port(g_srv, idx);
    for (int i = 0; i < 3; i++)
        expect_served("127.0.0.21", "127.0.0.1", g_port);
    expect_dropped("127.0.0.21", "127.0.0.1", port2);
    expect_dropped("127.0.0.21", "127.0.0.1", g_port);
    expect_served("127.0.0.22", "127.0.0.1", port2); /* another source: its own bucket */
    pc_server_stats_t st = stats();
    assert_true(st.kernel_dropped_rate >= 2);
    assert_int_equal(st.rejected[PC_STEP_SOURCE_RATE], 0); /* none reached user space */
    /* each listener counts the source maps it uses, the stats count them once */
    uint64_t b0 = listener_filter(0).kernel_bytes, b1 = listener_filter(idx).kernel_bytes;
    assert_true(b0 > 0 && b1 > 0);
    assert_true(st.kernel_filter_bytes >= b0 && st.kernel_filter_bytes >= b1);
    assert_true(st.kernel_filter_bytes < b0 + b1 - (4u << 20)); /* buckets: ~8 MiB */
}

/* Per-source limits with sources exempt from them. A trusted PROXY source's
 * address carries all its clients (limited one by one after the header),
 * and allow_exempts lets allowed sources past the limits: the eBPF program
 * cannot tell those apart, so it must not apply the limits on SYNs (it used
 * to: the balancer's clients shared one bucket in the kernel). The rules
 * stay in the kernel; the accept thread and the second verdict limit. */
static void ebpf_per_source_exempt(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;

    /* without exemptions the kernel applies the limits */
    ebpf_rate3_config(&cfg);
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(listener_filter(0).per_source, 1);
    teardown(NULL);

    /* a trusted proxy: ten clients through it at once, past the burst of 3 */
    ebpf_rate3_config(&cfg);
    cfg.rules = rules_from("deny 127.0.0.2\n");
    cfg.proxy_trusted = rules_from("allow 127.0.0.1\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(listener_filter(0).per_source, 0);
    for (int i = 1; i <= 10; i++) {
        int fd = -1;
        int r = try_connect("127.0.0.1", "127.0.0.1", g_port, DENIED_WAIT_MS, &fd);
        if (r != C_OK) fail_msg("proxied client %d: SYN not answered (%d)", i, r);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "PROXY TCP4 10.7.0.%d 127.0.0.1 4000 80\r\n", i);
        shim_set_timeout(fd, 5000);
        assert_int_equal(shim_send_all(fd, hdr, strlen(hdr)), 0);
        expect_echo(fd, "behind the balancer");
        close(fd);
    }
    expect_dropped("127.0.0.2", "127.0.0.1", g_port); /* the rules are still in the kernel */
    pc_server_stats_t st = stats();
    assert_int_equal(st.kernel_dropped_rate + st.kernel_dropped_max, 0);
    assert_true(st.kernel_dropped_rules >= 1);
    /* a direct client is still limited, after the accept */
    int served = 0;
    for (int i = 0; i < 6; i++) {
        int fd = -1;
        int r = try_connect("127.0.0.5", "127.0.0.1", g_port, 5000, &fd);
        if (r == C_RESET) continue;
        assert_int_equal(r, C_OK);
        shim_set_timeout(fd, 5000);
        char c = 0;
        if (shim_send_all(fd, "x", 1) == 0 && shim_recv_some(fd, &c, 1) == 1) served++;
        close(fd);
    }
    assert_true(served >= 3 && served < 6);
    WAIT_FOR(stats().rejected[PC_STEP_SOURCE_RATE] >= 1, 2000);
    assert_true(stats().rejected[PC_STEP_SOURCE_RATE] >= 1);
    assert_int_equal(stats().kernel_dropped_rate, 0);
    teardown(NULL);

    /* allow_exempts: an allowed source is not limited, in the kernel either */
    ebpf_rate3_config(&cfg);
    cfg.allow_exempts = 1;
    cfg.rules = rules_from("allow 127.0.0.6\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(listener_filter(0).per_source, 0);
    for (int i = 0; i < 8; i++) {
        int fd = -1;
        int r = try_connect("127.0.0.6", "127.0.0.1", g_port, DENIED_WAIT_MS, &fd);
        if (r != C_OK) fail_msg("allowed source, connection %d: SYN not answered (%d)", i, r);
        shim_set_timeout(fd, 5000);
        expect_echo(fd, "exempt");
        close(fd);
    }
    assert_int_equal(stats().kernel_dropped_rate, 0);
}

/* listen(2) is wrapped in this test's link (-Wl,--wrap=listen): while
 * g_slow_listen is set it takes 200 ms, so that a reload from another
 * thread lands between a new listener's filter attach and the moment the
 * server counts the listener. */
int __real_listen(int fd, int backlog);
int __wrap_listen(int fd, int backlog);
static atomic_int g_slow_listen, g_in_listen;
static atomic_int g_fail_listen; /* while set, listen(2) fails (EADDRINUSE) */

int __wrap_listen(int fd, int backlog)
{
    if (atomic_load(&g_slow_listen)) {
        atomic_store(&g_in_listen, 1);
        shim_sleep_ms(200);
    }
    if (atomic_load(&g_fail_listen)) {
        errno = EADDRINUSE; /* as when another socket listens on the port */
        return -1;
    }
    return __real_listen(fd, backlog);
}

/* A listener whose listen(2) fails after its filter was attached: the
 * server, with no listener, reports no kernel tier and no kernel memory;
 * the next listener gets its own tier. */
static void failed_listen_leaves_no_tier(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = rules_from(k_issue_rules);
    assert_int_equal(pc_server_create(&cfg, &g_srv), 0);
    atomic_store(&g_fail_listen, 1);
    int idx = pc_server_listen(g_srv, "127.0.0.1:0");
    atomic_store(&g_fail_listen, 0);
    assert_true(idx < 0);
    pc_server_stats_t st = stats();
    assert_int_equal(st.kernel_filter, PC_KERNEL_FILTER_OFF);
    assert_int_equal(st.kernel_filter_bytes, 0);
    assert_int_equal(st.accept_mode, PC_ACCEPT_MODE_POST_HANDSHAKE);
    idx = pc_server_listen(g_srv, "127.0.0.1:0");
    assert_int_equal(idx, 0);
    g_port = pc_server_listener_port(g_srv, idx);
    assert_int_equal(pc_server_start(g_srv), 0);
    expect_tier(0, PC_KERNEL_FILTER_AUTO);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port);
    expect_served("127.0.0.1", "127.0.0.1", g_port);
}

static void *reload_when_listening(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5000 && !atomic_load(&g_in_listen); i++)
        shim_sleep_ms(1);
    /* 127.0.0.2 is no longer denied */
    int rc = pc_server_set_rules(g_srv, rules_from("deny 10.0.0.0/8\n"));
    return (void *)(intptr_t)rc;
}

/* A reload while a listener is being opened reaches that listener too: it
 * either waits for the listener or the listener starts with the new set,
 * never keeps the set attached before the swap (which dropped 127.0.0.2's
 * SYNs on the new listener while user space allowed it). */
static void reload_during_listen(void **state)
{
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = tier_of(state);
    cfg.rules = rules_from(k_issue_rules);
    create_server_on(&cfg, "127.0.0.1:0");
    int port0 = g_port;
    atomic_store(&g_in_listen, 0);
    atomic_store(&g_slow_listen, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reload_when_listening, NULL), 0);
    int idx = pc_server_listen(g_srv, "127.0.0.1:0");
    atomic_store(&g_slow_listen, 0);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal(idx, 1);
    assert_int_equal((int)(intptr_t)rc, 0);
    assert_int_equal(atomic_load(&g_in_listen), 1);
    assert_int_equal(pc_server_start(g_srv), 0);
    expect_tier(0, cfg.kernel_filter);
    expect_tier(1, cfg.kernel_filter);
    expect_served("127.0.0.2", "127.0.0.1", port0);
    expect_served("127.0.0.2", "127.0.0.1", pc_server_listener_port(g_srv, 1));
}

/* setsockopt(2) is wrapped too (-Wl,--wrap=setsockopt): while
 * g_slow_attach is set, attaching a filter program to a socket takes 1 s, so
 * a rule swap stays inside its attach the way a swap of a large set stays
 * inside its compile and map fill. */
int __real_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int __wrap_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
static atomic_int g_slow_attach, g_in_attach, g_swap_done, g_refuse_bpf;
static atomic_int g_detached; /* filters taken off a socket while g_refuse_bpf is set */

int __wrap_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    if (level == SOL_SOCKET && (name == SO_ATTACH_BPF || name == SO_ATTACH_FILTER) &&
        atomic_load(&g_slow_attach)) {
        atomic_store(&g_in_attach, 1);
        shim_sleep_ms(1000);
    }
    int refuse = atomic_load(&g_refuse_bpf);
    if (level == SOL_SOCKET && name == SO_ATTACH_BPF && refuse) {
        errno = refuse > 1 ? refuse : EPERM; /* 1: as without CAP_NET_ADMIN; else that errno */
        return -1;
    }
    if (level == SOL_SOCKET && name == SO_DETACH_FILTER && atomic_load(&g_refuse_bpf))
        atomic_fetch_add(&g_detached, 1); /* (SO_DETACH_BPF is the same option) */
    return __real_setsockopt(fd, level, name, val, len);
}

/* pc_server_set_rules(r) with the eBPF attach refused: 1 with EPERM, else
 * with that errno. */
static int set_rules_refused(int refuse, pc_rules_t *r)
{
    atomic_store(&g_refuse_bpf, refuse);
    int rc = pc_server_set_rules(g_srv, r);
    atomic_store(&g_refuse_bpf, 0);
    return rc;
}

static void *swap_slowly(void *arg)
{
    (void)arg;
    int rc = pc_server_set_rules(g_srv, rules_from("deny 127.0.0.2\n"));
    atomic_store(&g_swap_done, 1);
    return (void *)(intptr_t)rc;
}

/* A rule swap holds the kernel filter's lock while it compiles and attaches
 * the new program (a 1.1M-prefix set: about 0.3 s here). Meanwhile the
 * accept thread and the workers go on: with per-source limits they mark and
 * unmark sources in the eBPF program on every accept and close, and
 * pc_server_stats and pc_server_top_rules (pc-http's /metrics, on a worker)
 * read the kernel's counters. None of them waits for the swap: they stalled
 * the accept thread and the workers for the whole compile. */
static void swap_does_not_stall(void **state)
{
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = tier_of(state);
    cfg.per_source_max = 16; /* never reached: closes may lag the next connect */
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    start_server(&cfg);
    expect_tier(0, cfg.kernel_filter);
    /* only the eBPF tier applies per-source limits in the kernel */
    assert_int_equal(listener_filter(0).per_source, cfg.kernel_filter == PC_KERNEL_FILTER_EBPF);
    atomic_store(&g_in_attach, 0);
    atomic_store(&g_swap_done, 0);
    atomic_store(&g_slow_attach, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, swap_slowly, NULL), 0);
    for (int i = 0; i < 5000 && !atomic_load(&g_in_attach); i++)
        shim_sleep_ms(1);
    assert_int_equal(atomic_load(&g_in_attach), 1);
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < 6; i++) /* each accept and close marks or unmarks the source */
        expect_served("127.0.0.3", "127.0.0.1", g_port);
    pc_server_stats_t st = stats();
    pc_rule_info_t top[4];
    assert_true(pc_server_top_rules(g_srv, top, 4) >= 0);
    /* done inside the attach's second: not after it (the swap's end and
     * these calls' return may race; a call that waited took most of it) */
    uint64_t took = shim_now_ms() - t0;
    int during = !atomic_load(&g_swap_done) && took < 500;
    atomic_store(&g_slow_attach, 0);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((int)(intptr_t)rc, 0);
    if (!during)
        fail_msg("connections, stats and top rules waited for the rule swap (%d ms)", (int)took);
    assert_true(st.accepted >= 6);
    expect_tier(0, cfg.kernel_filter);
    expect_dropped("127.0.0.2", "127.0.0.1", g_port); /* the new set is in force */
    expect_served("127.0.0.3", "127.0.0.1", g_port);
}

/* pc_server_top_rules folds the kernel's drops unless a rule swap is under
 * way. A pc_server_listener_filter on another thread (a short hold of the
 * same lock) made it skip the fold: 13 of 20 calls returned fewer hits than
 * the kernel had counted, with no swap anywhere. */
static atomic_int g_lf_stop;

static void *listener_filter_loop(void *arg)
{
    (void)arg;
    pc_listener_filter_t kf;
    while (!atomic_load(&g_lf_stop))
        pc_server_listener_filter(g_srv, 0, &kf);
    return NULL;
}

static void top_rules_fold_beside_listener_filter(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.rules = rules_from("deny 127.0.0.2\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    atomic_store(&g_lf_stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, listener_filter_loop, NULL), 0);
    int stale = 0;
    uint64_t k = 0, h = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(try_connect("127.0.0.2", "127.0.0.1", g_port, 50, NULL), C_TIMEOUT);
        k = stats().kernel_dropped_rules; /* then the hits: they can only be ahead */
        h = rule_hits("127.0.0.2");
        stale += h < k;
    }
    atomic_store(&g_lf_stop, 1);
    pthread_join(t, NULL);
    if (stale)
        fail_msg("%d of 20 top-rules reads behind the kernel's drops (last: %llu < %llu)", stale,
                 (unsigned long long)h, (unsigned long long)k);
}

/* AUTO: an eBPF swap the kernel refuses falls to the classic tier with the
 * new set, and the classic program replaces the eBPF one on the socket
 * before that object is closed (it used to be detached first: a moment with
 * no program, in which denied SYNs got a handshake and a reset). */
static void auto_swap_refused_falls_to_cbpf(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF); /* AUTO as root */
    expect_dropped("127.0.9.7", "127.0.0.1", g_port);
    atomic_store(&g_detached, 0);
    int rc = set_rules_refused(1, rules_from("deny 127.0.8.0/24\n"));
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&g_detached), 0); /* replaced, never taken off */
    pc_listener_filter_t kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_CBPF);
    assert_non_null(strstr(kf.why, "ebpf"));
    expect_dropped("127.0.8.1", "127.0.0.1", g_port);
    expect_served("127.0.9.7", "127.0.0.1", g_port);
    assert_int_equal(stats().kernel_filter, PC_KERNEL_FILTER_CBPF);
    /* both tiers refused: both reasons, cut to the reason's room (never
     * past it: the copy is a terminated string) */
    rc = set_rules_refused(1, isolated_v4_denies(3000, ""));
    assert_int_equal(rc, 0);
    kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    if (!memchr(kf.why, 0, sizeof kf.why)) fail_msg("the reason is not terminated in its room");
    assert_int_equal(strncmp(kf.why, "ebpf: ", 6), 0);
    assert_non_null(strstr(kf.why, "; cbpf: "));
    assert_int_equal(strlen(kf.why), sizeof kf.why - 1); /* cut: the two do not fit */
}

/* A reload that drops the eBPF tier (the attach refused) and a later one
 * that brings it back: the new program starts with no marks, and a source
 * holding its maximum all along must get its mark back (its next SYN
 * dropped in the kernel). It used to keep no mark until its count changed:
 * the 4th connection completed its handshake and user space refused it. */
static void max_marks_after_tier_returns(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.per_source_max = 3;
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    int held[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(try_connect("127.0.0.3", "127.0.0.1", g_port, 5000, &held[i]), C_OK);
        shim_set_timeout(held[i], 5000);
        expect_echo(held[i], "held");
    }
    expect_marked("127.0.0.3", "127.0.0.1", g_port); /* dropped in the kernel */
    uint64_t max0 = stats().kernel_dropped_max;
    assert_true(max0 >= 1);
    int rc = set_rules_refused(1, rules_from("deny 127.0.8.0/24\n"));
    assert_int_equal(rc, 0);
    pc_listener_filter_t kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF); /* the tier went */
    /* the reason is the eBPF tier's alone (no classic tier was asked for) */
    size_t wl = strlen(kf.why);
    assert_int_equal(strncmp(kf.why, "ebpf: ", 6), 0);
    assert_true(wl > 6 && kf.why[wl - 1] != ' ' && kf.why[wl - 2] != ';');
    /* refused again: the reason is this reload's, not added to the last */
    rc = set_rules_refused(1, rules_from("deny 127.0.7.0/24\n"));
    assert_int_equal(rc, 0);
    kf = listener_filter(0);
    assert_int_equal(kf.tier, PC_KERNEL_FILTER_OFF);
    assert_int_equal(strncmp(kf.why, "ebpf: ", 6), 0);
    if (strstr(kf.why + 1, "ebpf: ")) fail_msg("the reasons piled up: %s", kf.why);
    /* and the old program with it: its set no longer drops in the kernel */
    expect_served("127.0.9.7", "127.0.0.1", g_port);
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.9.0/24\n")), 0);
    expect_tier(0, PC_KERNEL_FILTER_EBPF); /* and came back, a new program */
    uint64_t rej0 = stats().rejected[PC_STEP_SOURCE_MAX];
    expect_dropped("127.0.0.3", "127.0.0.1", g_port);
    assert_true(stats().kernel_dropped_max >= max0 + 1);
    assert_int_equal(stats().rejected[PC_STEP_SOURCE_MAX], rej0);
    for (int i = 0; i < 3; i++)
        close(held[i]);
    WAIT_FOR(stats().active == 0, 5000);
    expect_served("127.0.0.3", "127.0.0.1", g_port); /* below its maximum: unmarked */
}

/* The listener's tier is logged once per change of tier or reason: at
 * start, not again for a reload that changes neither, again when only the
 * reason changes. A tier asked for and refused is a refusal; AUTO settling
 * for the classic tier is not, and says why. A trusted PROXY source without
 * per-source limits exempts nothing: no word about limits on SYNs. */
static void tier_logged_once_per_change(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    cfg.proxy_trusted = rules_from("allow 127.0.0.1\n");
    pc_log_set_level(PC_LOG_INFO);
    log_capture_begin("kernel filter");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(g_nstart_lines, 1);
    assert_non_null(strstr(g_start_lines[0], "kernel filter ebpf"));
    assert_null(strstr(g_start_lines[0], "refused"));
    /* the same tier, no reason: nothing to say */
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.8.0/24\n")), 0);
    assert_int_equal(g_nstart_lines, 1);
    /* refused: said once, as the refusal of the tier asked */
    assert_int_equal(set_rules_refused(1, rules_from("deny 127.0.7.0/24\n")), 0);
    assert_int_equal(listener_filter(0).tier, PC_KERNEL_FILTER_OFF);
    assert_int_equal(g_nstart_lines, 2);
    assert_non_null(strstr(g_start_lines[1], "kernel filter ebpf refused, running off"));
    assert_int_equal(set_rules_refused(1, rules_from("deny 127.0.6.0/24\n")), 0); /* the same way */
    assert_int_equal(g_nstart_lines, 2);
    /* refused for another reason: the tier is the same, the reason is news */
    assert_int_equal(set_rules_refused(ENOMEM, rules_from("deny 127.0.5.0/24\n")), 0);
    assert_int_equal(listener_filter(0).tier, PC_KERNEL_FILTER_OFF);
    assert_int_equal(g_nstart_lines, 3);
    assert_non_null(strstr(g_start_lines[2], "kernel filter ebpf refused, running off"));
    assert_true(strcmp(g_start_lines[1], g_start_lines[2]) != 0);
    /* and back */
    assert_int_equal(pc_server_set_rules(g_srv, rules_from("deny 127.0.4.0/24\n")), 0);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(g_nstart_lines, 4);
    assert_null(strstr(g_start_lines[3], "refused"));
    log_capture_end();
    pc_log_set_level(PC_LOG_WARN);
    teardown(NULL);

    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    pc_log_set_level(PC_LOG_INFO);
    log_capture_begin("kernel filter");
    atomic_store(&g_refuse_bpf, 1);
    start_server(&cfg);
    atomic_store(&g_refuse_bpf, 0);
    log_capture_end();
    pc_log_set_level(PC_LOG_WARN);
    assert_int_equal(listener_filter(0).tier, PC_KERNEL_FILTER_CBPF);
    assert_int_equal(g_nstart_lines, 1);
    assert_non_null(strstr(g_start_lines[0], "kernel filter cbpf ("));
    assert_non_null(strstr(g_start_lines[0], "; ebpf: "));
    assert_null(strstr(g_start_lines[0], "refused"));
}

/* AUTO, an eBPF swap refused, the classic tier in its place: the kernel
 * drops of the eBPF program that went are folded into the set it was built
 * from at that moment, and carried over to the new set by rule, whatever
 * the rule's place in it. */
static void auto_swap_refused_keeps_hits(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_AUTO;
    cfg.rules = rules_from("deny 127.0.9.0/24\n");
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF); /* AUTO as root */
    expect_dropped("127.0.9.7", "127.0.0.1", g_port);
    uint64_t d = stats().kernel_dropped_rules;
    assert_true(d >= 1);
    assert_int_equal(set_rules_refused(1, rules_from("deny 127.0.8.0/24\ndeny 127.0.9.0/24\n")), 0);
    assert_int_equal(listener_filter(0).tier, PC_KERNEL_FILTER_CBPF);
    assert_int_equal(stats().kernel_dropped_rules, d);
    uint64_t h9 = rule_hits("127.0.9.0/24"), h8 = rule_hits("127.0.8.0/24");
    if (h9 != d || h8 != 0)
        fail_msg("%llu kernel drops of 127.0.9.0/24; its hits %llu, 127.0.8.0/24's %llu",
                 (unsigned long long)d, (unsigned long long)h9, (unsigned long long)h8);
}

/* per_source_max with a source prefix (/24): the sources of one group share
 * the maximum, and the mark the accept thread puts in the kernel covers the
 * group, so a third address of 127.0.0.0/24 gets no SYN-ACK once two others
 * hold the group's two connections. */
static void ebpf_max_marks_prefix_group(void **state)
{
    (void)state;
    if (!need_root()) skip();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.per_source_max = 2;
    cfg.source_prefix_v4 = 24;
    start_server(&cfg);
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    assert_int_equal(listener_filter(0).per_source, 1);
    int held[2];
    const char *src[2] = {"127.0.0.3", "127.0.0.4"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(try_connect(src[i], "127.0.0.1", g_port, 5000, &held[i]), C_OK);
        shim_set_timeout(held[i], 5000);
        expect_echo(held[i], "group");
    }
    /* the group's mark covers a third address of it */
    expect_marked("127.0.0.5", "127.0.0.1", g_port);
    assert_true(stats().kernel_dropped_max >= 1);
    expect_served("127.0.1.5", "127.0.0.1", g_port); /* another group */
    for (int i = 0; i < 2; i++)
        close(held[i]);
    WAIT_FOR(stats().active == 0, 5000);
    expect_served("127.0.0.5", "127.0.0.1", g_port); /* below its maximum: unmarked */
}

/* per_source_max on an IPv6 listener, each address its own source (/128):
 * ::1 holding its maximum gets its next SYN dropped in the kernel. */
static void ebpf_max_marks_v6(void **state)
{
    (void)state;
    if (!need_root()) skip();
    if (!shim_have_ipv6()) {
        print_message("SKIPPED: no IPv6 loopback\n");
        skip();
    }
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.kernel_filter = PC_KERNEL_FILTER_EBPF;
    cfg.per_source_max = 1;
    cfg.source_prefix_v6 = 128;
    int port = start_server_on(&cfg, "[::1]:0");
    expect_tier(0, PC_KERNEL_FILTER_EBPF);
    int held = -1;
    assert_int_equal(try_connect("::1", "::1", port, 5000, &held), C_OK);
    shim_set_timeout(held, 5000);
    expect_echo(held, "held");
    expect_marked("::1", "::1", port);
    assert_true(stats().kernel_dropped_max >= 1);
    close(held);
    WAIT_FOR(stats().active == 0, 5000);
    expect_served("::1", "::1", port); /* below its maximum: unmarked */
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(drop_v4, teardown),
        TIER_TEST("drop_v4_ebpf", drop_v4, k_ebpf),
        TIER_TEST("drop_v4_cbpf", drop_v4, k_cbpf),
        cmocka_unit_test_teardown(drop_v6, teardown),
        cmocka_unit_test_teardown(reload, teardown),
        TIER_TEST("reload_ebpf", reload, k_ebpf),
        TIER_TEST("reload_cbpf", reload, k_cbpf),
        cmocka_unit_test_teardown(reload_cbpf_large_v6, teardown),
        cmocka_unit_test_teardown(ebpf_counts, teardown),
        cmocka_unit_test_teardown(off_and_shadow, teardown),
        cmocka_unit_test_teardown(explicit_cbpf_accepted_sockets, teardown),
        cmocka_unit_test_teardown(cbpf_compile_out_of_memory, teardown),
        cmocka_unit_test_teardown(ebpf_per_source_exempt, teardown),
        cmocka_unit_test_teardown(ebpf_max_exempt_shares_prefix, teardown),
        cmocka_unit_test_teardown(ebpf_rate_across_listeners, teardown),
        TIER_TEST("reload_during_listen_ebpf", reload_during_listen, k_ebpf),
        TIER_TEST("swap_does_not_stall_ebpf", swap_does_not_stall, k_ebpf),
        TIER_TEST("swap_does_not_stall_cbpf", swap_does_not_stall, k_cbpf),
        cmocka_unit_test_teardown(top_rules_fold_beside_listener_filter, teardown),
        cmocka_unit_test_teardown(max_marks_after_tier_returns, teardown),
        cmocka_unit_test_teardown(auto_swap_refused_falls_to_cbpf, teardown),
        cmocka_unit_test_teardown(ebpf_max_marks_prefix_group, teardown),
        cmocka_unit_test_teardown(tier_logged_once_per_change, teardown),
        cmocka_unit_test_teardown(auto_swap_refused_keeps_hits, teardown),
        cmocka_unit_test_teardown(failed_listen_leaves_no_tier, teardown),
        cmocka_unit_test_teardown(ebpf_max_marks_v6, teardown),
        TIER_TEST("reload_during_listen_cbpf", reload_during_listen, k_cbpf),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("kfilter", tests, NULL, NULL);
}
