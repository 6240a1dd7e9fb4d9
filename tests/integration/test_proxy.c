/* SPDX-License-Identifier: MIT */
/* The PROXY protocol on a real server over loopback: v1 and v2 (IPv4, IPv6,
 * LOCAL, TLVs) sent byte by byte, bytes after the header in the same segment,
 * an untrusted source sending a header (it is data), a trusted source
 * without a header (reset at the timeout), malformed headers (reset, counted
 * per cause), the second verdict on the real client (rules, per-source
 * maximum, condition) and per-source slots given back on every path. The
 * server greets each opened connection with what it knows of it:
 * "peer=ADDR:PORT proxy=ADDR|- authority=TEXT|-\n", then echoes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pick.h"

#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#endif

static void fmt_addr(const struct sockaddr *sa, char *out, size_t cap, int with_port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in a; /* copied: a struct sockaddr promises less alignment */
        memcpy(&a, sa, sizeof a);
        inet_ntop(AF_INET, (void *)&a.sin_addr, ip, sizeof ip);
        port = ntohs(a.sin_port);
        if (with_port)
            snprintf(out, cap, "%s:%u", ip, port);
        else
            snprintf(out, cap, "%s", ip);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 a; /* copied: a struct sockaddr promises less alignment */
        memcpy(&a, sa, sizeof a);
        inet_ntop(AF_INET6, (void *)&a.sin6_addr, ip, sizeof ip);
        port = ntohs(a.sin6_port);
        if (with_port)
            snprintf(out, cap, "[%s]:%u", ip, port);
        else
            snprintf(out, cap, "%s", ip);
    } else {
        snprintf(out, cap, "?");
    }
}

static void px_on_open(pc_conn_t *c)
{
    atomic_fetch_add(&g_opens, 1);
    char peer[80], proxy[80] = "-", auth[64] = "-", line[300];
    fmt_addr(pc_conn_peer_addr(c), peer, sizeof peer, 1);
    const struct sockaddr *pa = pc_conn_proxy_addr(c);
    if (pa) fmt_addr(pa, proxy, sizeof proxy, 0);
    size_t len = 0;
    const char *v = pc_conn_proxy_tlv(c, PC_PROXY_TLV_AUTHORITY, &len);
    if (v && len < sizeof auth) {
        memcpy(auth, v, len);
        auth[len] = 0;
    }
    int n = snprintf(line, sizeof line, "peer=%s proxy=%s authority=%s\n", peer, proxy, auth);
    pc_conn_send(c, line, (size_t)n);
}

static void px_config(pc_server_config_t *cfg, const char *trusted)
{
    base_config(cfg);
    cfg->cb.on_open = px_on_open;
    pc_rules_t *r = NULL;
    char err[256];
    assert_int_equal(pc_rules_load_string(trusted, strlen(trusted), "trusted", &r, err, sizeof err),
                     0);
    cfg->proxy_trusted = r;
}

static shim_sock_t connect_nodelay(const char *src)
{
    shim_sock_t s = shim_connect("127.0.0.1", g_port, src, 5000);
    assert_true(s != SHIM_INVALID);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    return s;
}

/* One byte per send, a pause between them, so the server reads them apart. */
static void send_bytewise(shim_sock_t s, const void *buf, size_t n)
{
    const char *p = buf;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(shim_send_all(s, p + i, 1), 0);
        shim_sleep_ms(2);
    }
}

static void read_line(shim_sock_t s, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char ch;
        int r = shim_recv_some(s, &ch, 1);
        if (r != 1)
            fail_msg("connection ended before the greeting (%d) after '%.*s'", r, (int)n, out);
        if (ch == '\n') break;
        out[n++] = ch;
    }
    out[n] = 0;
}

/* Connect from src, send the header (bytewise or whole), then "hello" and
 * check the greeting and the echo. */
static void expect_greeting(const char *src, const void *hdr, size_t n, int bytewise,
                            const char *want)
{
    shim_sock_t s = connect_nodelay(src);
    if (bytewise)
        send_bytewise(s, hdr, n);
    else if (n)
        assert_int_equal(shim_send_all(s, hdr, n), 0);
    char line[300];
    read_line(s, line, sizeof line);
    assert_string_equal(line, want);
    expect_echo(s, "hello");
    shim_close(s);
}

/* The connection ends without a greeting: 1 if reset or closed. */
static int refused(shim_sock_t s)
{
    char buf[64];
    int r = shim_recv_some(s, buf, sizeof buf);
    return r == 0 || r == -1;
}

/* A client that sends these bytes (a header the server must not take) is
 * refused: reset (not closed), never served. */
static void expect_header_refused(const void *bytes, size_t n)
{
    shim_sock_t s = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(s, bytes, n), 0);
    size_t got = 0;
    assert_int_equal(shim_wait_reset(s, &got), -1);
    assert_int_equal(got, 0);
    shim_close(s);
}

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static size_t v2_ipv4(uint8_t *b, const uint8_t src[4], uint16_t sport)
{
    memcpy(b, v2sig, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0;
    b[15] = 12;
    memcpy(b + 16, src, 4);
    const uint8_t dst[4] = {127, 0, 0, 1};
    memcpy(b + 20, dst, 4);
    b[24] = (uint8_t)(sport >> 8);
    b[25] = (uint8_t)sport;
    b[26] = 0;
    b[27] = 80;
    return 28;
}

static void v1_byte_by_byte(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    start_server(&cfg);
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    expect_greeting(NULL, h, strlen(h), 1, "peer=192.0.2.7:5555 proxy=127.0.0.1 authority=-");
    const char *h6 = "PROXY TCP6 2001:db8::7 ::1 6000 80\r\n";
    expect_greeting(NULL, h6, strlen(h6), 1, "peer=[2001:db8::7]:6000 proxy=127.0.0.1 authority=-");
    const char *hu = "PROXY UNKNOWN\r\n";
    shim_sock_t s = connect_nodelay("127.0.0.3");
    send_bytewise(s, hu, strlen(hu));
    char line[300];
    read_line(s, line, sizeof line);
    assert_true(strncmp(line, "peer=127.0.0.3:", 15) == 0); /* the socket's address */
    assert_non_null(strstr(line, " proxy=- "));
    shim_close(s);
    /* the header and the first bytes in one segment: the bytes are data */
    s = connect_nodelay(NULL);
    const char *both = "PROXY TCP4 192.0.2.8 127.0.0.1 1 2\r\nfirst";
    assert_int_equal(shim_send_all(s, both, strlen(both)), 0);
    read_line(s, line, sizeof line);
    assert_string_equal(line, "peer=192.0.2.8:1 proxy=127.0.0.1 authority=-");
    char echo[5];
    assert_int_equal(shim_recv_exact(s, echo, 5), 5);
    assert_memory_equal(echo, "first", 5);
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.proxy_headers, 4);
    assert_int_equal(st.active, 0);
}

static void v2_ipv4_ipv6_tlv_local(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1\n");
    cfg.proxy_versions = PC_PROXY_V2;
    start_server(&cfg);
    uint8_t b[256];
    const uint8_t src4[4] = {198, 51, 100, 9};
    size_t n = v2_ipv4(b, src4, 4444);
    expect_greeting(NULL, b, n, 1, "peer=198.51.100.9:4444 proxy=127.0.0.1 authority=-");
    /* IPv6 with TLVs: ALPN, authority */
    memcpy(b, v2sig, 12);
    b[12] = 0x21;
    b[13] = 0x21;
    uint8_t *p = b + 16;
    const uint8_t s6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};
    memcpy(p, s6, 16);
    memset(p + 16, 0, 16);
    p[31] = 1;
    p[32] = 0x1F;
    p[33] = 0x90; /* 8080 */
    p[34] = 0;
    p[35] = 80;
    p += 36;
    const uint8_t alpn[] = {PC_PROXY_TLV_ALPN, 0, 2, 'h', '2'};
    memcpy(p, alpn, sizeof alpn);
    p += sizeof alpn;
    const uint8_t auth[] = {
        PC_PROXY_TLV_AUTHORITY, 0, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm'};
    memcpy(p, auth, sizeof auth);
    p += sizeof auth;
    size_t blen = (size_t)(p - b) - 16;
    b[14] = (uint8_t)(blen >> 8);
    b[15] = (uint8_t)blen;
    expect_greeting(NULL, b, (size_t)(p - b), 1,
                    "peer=[2001:db8::42]:8080 proxy=127.0.0.1 authority=example.com");
    /* LOCAL: the socket's addresses, no proxy address, no second verdict */
    memcpy(b, v2sig, 12);
    b[12] = 0x20;
    b[13] = 0;
    b[14] = b[15] = 0;
    shim_sock_t s = connect_nodelay(NULL);
    send_bytewise(s, b, 16);
    char line[300];
    read_line(s, line, sizeof line);
    assert_true(strncmp(line, "peer=127.0.0.1:", 15) == 0);
    assert_non_null(strstr(line, " proxy=- authority=-"));
    expect_echo(s, "x");
    shim_close(s);
    /* v1 is not accepted here: reset, counted */
    const char *v1 = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    expect_header_refused(v1, strlen(v1));
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.proxy_headers, 3);
    assert_int_equal(st.proxy_errors[PC_PROXY_ERR_VERSION], 1);
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 1);
    assert_int_equal(atomic_load(&g_opens), 3);
}

static void untrusted_header_is_data(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.5\n");
    start_server(&cfg);
    shim_sock_t s = connect_nodelay("127.0.0.6");
    char line[300];
    read_line(s, line, sizeof line); /* opened at once: no header expected */
    assert_true(strncmp(line, "peer=127.0.0.6:", 15) == 0);
    assert_non_null(strstr(line, " proxy=- "));
    expect_echo(s, "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n");
    shim_close(s);
    pc_server_stats_t st = stats();
    assert_int_equal(st.proxy_headers, 0);
    for (int i = 0; i < PC_PROXY_ERR_COUNT; i++)
        assert_int_equal(st.proxy_errors[i], 0);
}

/* The trusted list is a rule set: a deny rule inside an allowed prefix
 * makes that source untrusted (its header is data), the others trusted. */
static void trust_list_deny_is_untrusted(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\ndeny 127.0.0.7\n");
    cfg.proxy_timeout_ms = 500;
    start_server(&cfg);
    shim_sock_t s = connect_nodelay("127.0.0.7");
    char line[300];
    read_line(s, line, sizeof line); /* opened at once: no header expected */
    assert_true(strncmp(line, "peer=127.0.0.7:", 15) == 0);
    assert_non_null(strstr(line, " proxy=- "));
    shim_close(s);
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    expect_greeting("127.0.0.8", h, strlen(h), 0,
                    "peer=192.0.2.7:5555 proxy=127.0.0.8 authority=-");
    assert_int_equal(stats().proxy_headers, 1);
}

static void trusted_without_header_times_out(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    cfg.proxy_timeout_ms = 300;
    start_server(&cfg);
    shim_sock_t s = connect_nodelay(NULL);
    shim_set_timeout(s, 10000);
    uint64_t t0 = shim_now_ms();
    size_t got = 0;
    assert_int_equal(shim_wait_reset(s, &got), -1); /* a reset, not a FIN */
    assert_true(shim_now_ms() - t0 >= 250);         /* not before the timeout */
    shim_close(s);
    /* a partial header does not push the deadline back */
    s = connect_nodelay(NULL);
    shim_set_timeout(s, 10000);
    assert_int_equal(shim_send_all(s, "PROXY TCP4 ", 11), 0);
    assert_int_equal(shim_wait_reset(s, &got), -1);
    shim_close(s);
    /* nor does a header trickling in, a byte every 100 ms: it is cut at the
     * deadline, not 300 ms after its latest byte (that would let a client
     * hold the connection for 20 x 100 ms here, and for ever at that pace) */
    s = connect_nodelay(NULL);
    shim_set_timeout(s, 10000);
    const char *slow = "PROXY TCP4 192.0.2.7"; /* 20 bytes, no CRLF */
    t0 = shim_now_ms();
    for (size_t i = 0; i < strlen(slow); i++) {
        if (shim_send_all(s, slow + i, 1) != 0) break; /* reset already */
        shim_sleep_ms(100);
    }
    assert_true(refused(s));
    assert_true(shim_now_ms() - t0 < 1500);
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.proxy_timeouts, 3);
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 3);
    assert_int_equal(st.active, 0);
    assert_int_equal(atomic_load(&g_opens), 0);
    assert_int_equal(atomic_load(&g_closes), 0); /* never opened: no on_close */
    /* once the header is in, its deadline is gone: the connection outlives
     * it (more than twice the 300 ms) and still echoes */
    s = connect_nodelay(NULL);
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    assert_int_equal(shim_send_all(s, h, strlen(h)), 0);
    char line[300];
    read_line(s, line, sizeof line);
    assert_string_equal(line, "peer=192.0.2.7:5555 proxy=127.0.0.1 authority=-");
    shim_sleep_ms(700);
    expect_echo(s, "still here");
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    st = stats();
    assert_int_equal(st.proxy_timeouts, 3);
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 3);
    assert_int_equal(st.closed[PC_CLOSE_HEADER_TIMEOUT], 0);
}

/* Every end in the header phase that the peer causes counts as
 * PC_CLOSE_PROXY, and the PROXY deadline alone bounds that phase: a shorter
 * idle timeout does not cut it (it used to, with a FIN counted as an idle
 * timeout); a FIN or reset before the header is complete is a missing
 * header, not "peer" or "reset". */
static void header_phase_ends_count_as_proxy(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    cfg.proxy_timeout_ms = 600;
    cfg.idle_timeout_ms = 150;
    start_server(&cfg);
    shim_sock_t s = connect_nodelay(NULL);
    shim_set_timeout(s, 10000);
    uint64_t t0 = shim_now_ms();
    assert_true(refused(s)); /* reset at the PROXY deadline */
    assert_true(shim_now_ms() - t0 >= 500);
    shim_close(s);
    s = connect_nodelay(NULL); /* part of a header, then FIN */
    assert_int_equal(shim_send_all(s, "PROXY TCP4 ", 11), 0);
    shim_shutdown_write(s);
    shim_set_timeout(s, 10000);
    size_t n = 0;
    assert_true(shim_wait_close(s, &n) != -2);
    shim_close(s);
    s = connect_nodelay(NULL); /* part of a header, then a reset */
    assert_int_equal(shim_send_all(s, "PROXY TCP4 ", 11), 0);
    shim_sleep_ms(50);
    shim_close_reset(s);
    WAIT_FOR(stats().closed[PC_CLOSE_PROXY] == 3 && stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 3);
    assert_int_equal(st.proxy_timeouts, 1);
    assert_int_equal(st.closed[PC_CLOSE_PEER] + st.closed[PC_CLOSE_RESET] +
                         st.closed[PC_CLOSE_IDLE_TIMEOUT] + st.closed[PC_CLOSE_ERROR],
                     0);
    assert_int_equal(atomic_load(&g_opens), 0);
    /* past the header, the idle timeout applies as before */
    s = connect_nodelay(NULL);
    const char *hdr = "PROXY TCP4 192.0.2.7 192.0.2.1 4000 80\r\n";
    assert_int_equal(shim_send_all(s, hdr, strlen(hdr)), 0);
    WAIT_FOR(atomic_load(&g_opens) == 1, 5000);
    shim_set_timeout(s, 10000);
    char line[128];
    read_line(s, line, sizeof line); /* px_on_open's greeting */
    WAIT_FOR(stats().closed[PC_CLOSE_IDLE_TIMEOUT] == 1, 5000);
    assert_int_equal(stats().closed[PC_CLOSE_IDLE_TIMEOUT], 1);
    shim_close(s);
}

/* ... nor does it wake the worker: while the header is awaited the timer
 * is armed for the PROXY deadline, not for an idle deadline that does not
 * apply (armed for that, the expiry found nothing to do and re-armed it in
 * the past: the worker woke every wheel tick until the PROXY deadline). */
static void header_phase_sleeps_past_idle_deadline(void **state)
{
    (void)state;
#ifdef __linux__
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    cfg.proxy_timeout_ms = 1500;
    cfg.idle_timeout_ms = 100;
    start_server(&cfg);
    shim_sock_t s = connect_nodelay(NULL);
    WAIT_FOR(stats().active == 1, 5000);
    shim_sleep_ms(200); /* past the idle timeout */
    long w0 = worker_wakeups();
    shim_sleep_ms(800);
    long woke = worker_wakeups() - w0;
    if (woke >= 10) print_error("the workers woke %ld times in 800 ms\n", woke);
    assert_true(woke < 10);
    shim_set_timeout(s, 10000);
    assert_true(refused(s)); /* reset at the PROXY deadline */
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    assert_int_equal(stats().closed[PC_CLOSE_PROXY], 1);
    assert_int_equal(stats().closed[PC_CLOSE_IDLE_TIMEOUT], 0);
#else
    skip(); /* counts the workers' wake-ups in /proc */
#endif
}

static void malformed_headers(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    start_server(&cfg);
    struct {
        const char *bytes;
        size_t n;
        int cause;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 18, PC_PROXY_ERR_SIGNATURE},
        {"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", 32, PC_PROXY_ERR_V1_SYNTAX},
        {"PROXY TCP4 1.2.3.400 1.2.3.5 1 2\r\n", 34, PC_PROXY_ERR_ADDRESS},
        {"\r\n\r\n\0\r\nQUIT\n\x22\x11\0\0", 16, PC_PROXY_ERR_COMMAND},
        {"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x02zz", 18, PC_PROXY_ERR_FAMILY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_header_refused(cases[i].bytes, cases[i].n);
    }
    /* a v1 line that never ends */
    char longl[200];
    memset(longl, 'x', sizeof longl);
    memcpy(longl, "PROXY ", 6);
    expect_header_refused(longl, sizeof longl);
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(st.proxy_errors[cases[i].cause], 1);
    assert_int_equal(st.proxy_errors[PC_PROXY_ERR_TOO_LONG], 1);
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 6);
    assert_int_equal(atomic_load(&g_opens), 0);
    assert_int_equal(st.active, 0);
}

static void second_verdict_on_real_client(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1\n");
    cfg.rules = NULL;
    pc_rules_t *r = NULL;
    const char *deny = "deny 192.0.2.66\n";
    assert_int_equal(pc_rules_load_string(deny, strlen(deny), "rules", &r, NULL, 0), 0);
    cfg.rules = r;
    start_server(&cfg);
    g_reject_src = "192.0.2.99"; /* the condition sees the real client */
    const char *h = "PROXY TCP4 192.0.2.66 127.0.0.1 1 80\r\n";
    shim_sock_t s = connect_nodelay(NULL);
    send_bytewise(s, h, strlen(h));
    assert_true(refused(s));
    shim_close(s);
    h = "PROXY TCP4 192.0.2.99 127.0.0.1 1 80\r\n";
    expect_header_refused(h, strlen(h));
    /* the proxy itself and another client are fine */
    h = "PROXY TCP4 192.0.2.67 127.0.0.1 1 80\r\n";
    expect_greeting(NULL, h, strlen(h), 0, "peer=192.0.2.67:1 proxy=127.0.0.1 authority=-");
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.rejected[PC_STEP_RULES], 1);
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 1);
    assert_int_equal(st.proxy_rejected, 2);
    assert_int_equal(st.closed[PC_CLOSE_PROXY], 2);
    assert_int_equal(atomic_load(&g_opens), 1);
    /* the refused two never reached the application: no on_close either */
    assert_int_equal(atomic_load(&g_closes), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_PROXY]), 0);
}

/* per_source_max 1 keyed by the real client: the proxy's own address is not
 * limited, a second connection of one real client is, and its slot comes back
 * on every path (done, timeout, malformed, rejected, peer gone mid-header,
 * server stop mid-header). */
static void per_source_slots_released(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1\n");
    cfg.per_source_max = 1;
    cfg.proxy_timeout_ms = 300;
    start_server(&cfg);
    const char *ha = "PROXY TCP4 192.0.2.10 127.0.0.1 1 80\r\n";
    const char *hb = "PROXY TCP4 192.0.2.11 127.0.0.1 1 80\r\n";
    char line[300];
    /* two real clients through one proxy address at once */
    shim_sock_t a = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(a, ha, strlen(ha)), 0);
    read_line(a, line, sizeof line);
    shim_sock_t b = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(b, hb, strlen(hb)), 0);
    read_line(b, line, sizeof line);
    assert_string_equal(line, "peer=192.0.2.11:1 proxy=127.0.0.1 authority=-");
    /* a second connection of the first client: over its maximum */
    shim_sock_t a2 = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(a2, ha, strlen(ha)), 0);
    assert_true(refused(a2));
    shim_close(a2);
    assert_int_equal(stats().rejected[PC_STEP_SOURCE_MAX], 1);
    shim_close(a);
    shim_close(b);
    WAIT_FOR(stats().active == 0, 5000);
    /* paths that end before on_open; after each the client is served again */
    for (int path = 0; path < 4; path++) {
        shim_sock_t s = connect_nodelay(NULL);
        if (path == 1) assert_int_equal(shim_send_all(s, "PROXY TCP9\r\n", 12), 0);
        if (path == 2) assert_int_equal(shim_send_all(s, "PROXY TCP4 ", 11), 0);
        if (path == 3) assert_int_equal(shim_send_all(s, "PROXY TCP4 192.0.2.10 ", 22), 0);
        if (path == 3)
            shim_close_reset(s); /* gone mid-header */
        else {
            shim_set_timeout(s, 10000);
            assert_true(refused(s)); /* 0: timeout; 1: malformed; 2: partial, then timeout */
            shim_close(s);
        }
        WAIT_FOR(stats().active == 0, 5000);
        expect_greeting(NULL, ha, strlen(ha), 0, "peer=192.0.2.10:1 proxy=127.0.0.1 authority=-");
        WAIT_FOR(stats().active == 0, 5000);
    }
    WAIT_FOR(stats().source_active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.active, 0);
    assert_int_equal(st.source_active, 0);
    assert_int_equal(st.proxy_timeouts, 2);
    assert_int_equal(st.proxy_errors[PC_PROXY_ERR_V1_SYNTAX], 1);
    /* server stop while a header is pending: no on_close, nothing held */
    shim_sock_t s = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(s, "PROXY ", 6), 0);
    WAIT_FOR(stats().active == 1, 5000);
    int closes = atomic_load(&g_closes);
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    assert_true(refused(s));
    shim_close(s);
    st = stats();
    assert_int_equal(st.active, 0);
    assert_int_equal(st.source_active, 0);
    assert_int_equal(atomic_load(&g_closes), closes);
}

/* The condition defers one real client (192.0.2.77), admits the rest. */
static pc_verdict_t defer_77(void *user, const struct sockaddr *peer, const struct sockaddr *local)
{
    (void)user;
    (void)local;
    char ip[80];
    fmt_addr(peer, ip, sizeof ip, 0);
    return strcmp(ip, "192.0.2.77") == 0 ? PC_DEFER : PC_ACCEPT;
}

/* After the header the connection is established and nothing can queue it
 * for later: the condition's PC_DEFER on the real client is a rejection,
 * counted as one at the condition step (not as a deferral). */
static void defer_on_real_client_rejects(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1\n");
    cfg.condition = defer_77;
    start_server(&cfg);
    const char *h = "PROXY TCP4 192.0.2.77 127.0.0.1 1 80\r\n";
    expect_header_refused(h, strlen(h));
    h = "PROXY TCP4 192.0.2.78 127.0.0.1 1 80\r\n";
    expect_greeting(NULL, h, strlen(h), 0, "peer=192.0.2.78:1 proxy=127.0.0.1 authority=-");
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 1);
    assert_int_equal(st.proxy_rejected, 1);
    assert_int_equal(st.deferred, 0);
    assert_int_equal(atomic_load(&g_opens), 1);
}

static atomic_int g_cond_calls, g_cond_bad_local;

/* Counts the calls, and those whose local address is not the listener's
 * (127.0.0.1:g_port), at accept and at the second verdict alike. */
static pc_verdict_t count_calls(void *user, const struct sockaddr *peer,
                                const struct sockaddr *local)
{
    (void)user;
    (void)peer;
    char want[64], got[80];
    snprintf(want, sizeof want, "127.0.0.1:%d", g_port);
    fmt_addr(local, got, sizeof got, 1);
    if (strcmp(got, want) != 0) atomic_fetch_add(&g_cond_bad_local, 1);
    atomic_fetch_add(&g_cond_calls, 1);
    return PC_ACCEPT;
}

/* A LOCAL header (the proxy speaking for itself, a health check) names no
 * client: no second verdict, the condition is asked once (at accept); a
 * proxied connection's client is asked about once more. */
static void local_header_judged_once(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1\n");
    cfg.condition = count_calls;
    atomic_store(&g_cond_calls, 0);
    atomic_store(&g_cond_bad_local, 0);
    start_server(&cfg);
    const uint8_t local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                               0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    shim_sock_t s = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(s, local, sizeof local), 0);
    char line[300];
    read_line(s, line, sizeof line);
    assert_true(strncmp(line, "peer=127.0.0.1:", 15) == 0);
    shim_close(s);
    assert_int_equal(atomic_load(&g_cond_calls), 1);
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    expect_greeting(NULL, h, strlen(h), 0, "peer=192.0.2.7:5555 proxy=127.0.0.1 authority=-");
    assert_int_equal(atomic_load(&g_cond_calls), 3);
    assert_int_equal(atomic_load(&g_cond_bad_local), 0);
    assert_int_equal(stats().proxy_headers, 2);
}

/* A proxy connecting over IPv6 (::1, trusted) for an IPv4 client. */
static void proxy_over_ipv6(void **state)
{
    (void)state;
    if (!shim_have_ipv6()) {
        print_message("IPv6 loopback not available: skipped\n");
        skip();
    }
    pc_server_config_t cfg;
    px_config(&cfg, "allow ::1\n");
    atomic_store(&g_opens, 0);
    int port = start_server_on(&cfg, "[::1]:0");
    shim_sock_t s = shim_connect("::1", port, NULL, 5000);
    assert_true(s != SHIM_INVALID);
    const char *h = "PROXY TCP4 203.0.113.5 192.0.2.1 7000 443\r\n";
    send_bytewise(s, h, strlen(h));
    char line[300];
    read_line(s, line, sizeof line);
    assert_string_equal(line, "peer=203.0.113.5:7000 proxy=::1 authority=-");
    expect_echo(s, "six");
    shim_close(s);
    pc_server_stats_t st = stats();
    assert_int_equal(st.proxy_headers, 1);
}

/* ---- the library's own client sending the header (pc_connect_ex) ---- */

/* What an outbound connection received (its worker writes, the test reads
 * once `lines` says enough arrived). */
static struct {
    char buf[512];
    size_t len;
    atomic_int lines, closed;
    atomic_int proxy_seen; /* on_close found a proxy address or TLV */
} g_out;

static void out_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)c;
    for (size_t i = 0; i < len && g_out.len + 1 < sizeof g_out.buf; i++) {
        g_out.buf[g_out.len++] = ((const char *)data)[i];
        if (((const char *)data)[i] == '\n') atomic_fetch_add(&g_out.lines, 1);
    }
}

/* An outbound connection was proxied by no one: no proxy address, no TLV,
 * whether it sent a header or not. */
static void out_on_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    (void)r;
    (void)err;
    size_t len = 0;
    if (pc_conn_proxy_addr(c) || pc_conn_proxy_tlv(c, PC_PROXY_TLV_AUTHORITY, &len))
        atomic_store(&g_out.proxy_seen, 1);
    atomic_store(&g_out.closed, 1);
}

static const pc_callbacks_t out_cb = {.on_data = out_on_data, .on_close = out_on_close};

/* Connect from a one-worker client server to our listener with opts. Its
 * worker is held busy until the connection's bytes are queued by id, so
 * they are always queued before the connect starts, ahead of the header the
 * library adds once connected: the header must still go first. Then the
 * greeting and their echo come back: the two lines in g_out.buf. */
static void connect_ex_greeting(const pc_connect_opts_t *o, int port)
{
    memset(g_out.buf, 0, sizeof g_out.buf);
    g_out.len = 0;
    atomic_store(&g_out.lines, 0);
    atomic_store(&g_out.closed, 0);
    pc_server_t *cs = start_client_server(&out_cb, NULL);
    worker_hold(cs);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", port);
    pc_conn_id_t id = 0;
    assert_int_equal(pc_connect_ex(cs, ep, o, NULL, NULL, &id), 0);
    assert_int_equal(pc_server_send_to(cs, id, "early\n", 6), 0);
    worker_release();
    WAIT_FOR(atomic_load(&g_out.lines) >= 2 || atomic_load(&g_out.closed), 5000);
    assert_int_equal(atomic_load(&g_out.lines), 2);
    assert_int_equal(pc_server_close_id(cs, id), 0);
    WAIT_FOR(atomic_load(&g_out.closed), 5000);
    pc_server_stop(cs, 1000);
    pc_server_destroy(cs);
}

/* pc_connect_ex with proxy_v2: the header goes first, naming the addresses
 * given (or the connection's own), and the server takes the real client
 * from it; a proxy address of no IP family is refused. */
static void connect_ex_sends_header(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.6\n");
    start_server(&cfg);
    pc_connect_opts_t o;
    pc_connect_opts_init(&o);
    o.source = "127.0.0.6";
    o.proxy_v2 = 1;
    struct sockaddr_storage real;
    socklen_t rlen;
    assert_int_equal(pc_parse_endpoint("203.0.113.9:4444", &real, &rlen), 0);
    o.proxy_src = (const struct sockaddr *)&real;
    connect_ex_greeting(&o, g_port);
    assert_string_equal(g_out.buf, "peer=203.0.113.9:4444 proxy=127.0.0.6 authority=-\nearly\n");

    /* its own addresses: the real client is the connection itself */
    o.proxy_src = NULL;
    connect_ex_greeting(&o, g_port);
    assert_memory_equal(g_out.buf, "peer=127.0.0.6:", 15);
    assert_non_null(strstr(g_out.buf, " proxy=127.0.0.6 authority=-\nearly\n"));

    /* an IPv6 real client behind an IPv4 connection: sent as IPv6 */
    assert_int_equal(pc_parse_endpoint("[2001:db8::9]:6666", &real, &rlen), 0);
    o.proxy_src = (const struct sockaddr *)&real;
    connect_ex_greeting(&o, g_port);
    assert_string_equal(g_out.buf, "peer=[2001:db8::9]:6666 proxy=127.0.0.6 authority=-\nearly\n");

    struct sockaddr bad;
    memset(&bad, 0, sizeof bad); /* AF_UNSPEC */
    o.proxy_src = &bad;
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    assert_int_equal(pc_connect_ex(g_srv, ep, &o, NULL, NULL, NULL), PC_EINVAL);
    assert_int_equal(stats().proxy_headers, 3);
    assert_int_equal(atomic_load(&g_opens), 3);

    /* refused (nobody listens on port 1): on_close runs while the header is
     * still unsent, and the connection still has no proxy address or TLV
     * (the destination's bytes, 02 00 01 'x' after 2001:db8, would read as
     * an authority TLV were the header to send taken for one received) */
    assert_int_equal(pc_parse_endpoint("203.0.113.9:4444", &real, &rlen), 0);
    o.proxy_src = (const struct sockaddr *)&real;
    struct sockaddr_storage to;
    socklen_t tolen;
    assert_int_equal(pc_parse_endpoint("[2001:db8:200:178::1]:443", &to, &tolen), 0);
    o.proxy_dst = (const struct sockaddr *)&to;
    atomic_store(&g_out.closed, 0);
    atomic_store(&g_out.proxy_seen, 0);
    pc_server_t *cs = start_client_server(&out_cb, NULL);
    assert_int_equal(pc_connect_ex(cs, "127.0.0.1:1", &o, NULL, NULL, NULL), 0);
    WAIT_FOR(atomic_load(&g_out.closed), 5000);
    assert_int_equal(atomic_load(&g_out.closed), 1);
    assert_int_equal(atomic_load(&g_out.proxy_seen), 0);
    pc_server_stop(cs, 1000);
    pc_server_destroy(cs);
}

#ifdef __linux__
/* The header pc_connect_ex writes, as a plain listener reads it: v2, PROXY,
 * INET over STREAM, naming proxy_src -> proxy_dst as given, or (NULL) the
 * connection's own local and peer addresses. The server above cannot check
 * the destination: nothing in the API shows it. */
static void connect_ex_header_bytes(void **state) /* not on Windows */
{
    (void)state;
    int lport;
    int l = shim_listen(4, &lport);
    assert_true(l >= 0);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", lport);
    struct sockaddr_storage src, dst;
    socklen_t slen;
    assert_int_equal(pc_parse_endpoint("203.0.113.9:4444", &src, &slen), 0);
    assert_int_equal(pc_parse_endpoint("198.51.100.2:8443", &dst, &slen), 0);
    pc_connect_opts_t o;
    pc_connect_opts_init(&o);
    o.proxy_v2 = 1;
    pc_server_t *cs = start_client_server(&out_cb, NULL);
    for (int named = 1; named >= 0; named--) {
        o.proxy_src = named ? (const struct sockaddr *)&src : NULL;
        o.proxy_dst = named ? (const struct sockaddr *)&dst : NULL;
        assert_int_equal(pc_connect_ex(cs, ep, &o, NULL, NULL, NULL), 0);
        int fd = accept(l, NULL, NULL);
        assert_true(fd >= 0);
        shim_set_timeout(fd, 5000);
        uint8_t b[28], want[28];
        assert_int_equal(shim_recv_exact(fd, b, sizeof b), sizeof b);
        struct sockaddr_in from; /* the connection's own source */
        socklen_t alen = sizeof from;
        assert_int_equal(getpeername(fd, (struct sockaddr *)&from, &alen), 0);
        const uint8_t *sa =
            named ? (const uint8_t[4]){203, 0, 113, 9} : (const uint8_t *)&from.sin_addr;
        v2_ipv4(want, sa, named ? 4444 : ntohs(from.sin_port));
        if (named) {
            memcpy(want + 20, (const uint8_t[4]){198, 51, 100, 2}, 4);
            want[26] = 8443 >> 8;
            want[27] = 8443 & 0xff;
        } else {
            want[26] = (uint8_t)(lport >> 8);
            want[27] = (uint8_t)(lport & 0xff);
        }
        assert_memory_equal(b, want, sizeof b);
        shim_close(fd);
    }
    pc_server_stop(cs, 1000);
    pc_server_destroy(cs);
    shim_close(l);
}
#endif

/* on_open pauses reading (the header's segment also carries the first
 * bytes): those bytes wait for the resume, as a receive would, and count
 * once in bytes_in. They used to go to on_data right after on_open. */
static atomic_int g_px_early, g_px_resumed;
static int g_px_flicker; /* on_open pauses, resumes (a receive starts), pauses */

static void px_resume(pc_conn_t *c)
{
    atomic_store(&g_px_resumed, 1);
    assert_int_equal(pc_conn_resume_read(c), 0);
}

static void px_pause_open(pc_conn_t *c)
{
    px_on_open(c);
    assert_int_equal(pc_conn_pause_read(c), 0);
    if (g_px_flicker) {
        assert_int_equal(pc_conn_resume_read(c), 0);
        assert_int_equal(pc_conn_pause_read(c), 0);
    }
    assert_int_equal(pc_conn_timer(c, 300, px_resume), 0);
}

static void px_echo_data(pc_conn_t *c, const void *data, size_t len)
{
    if (!atomic_load(&g_px_resumed)) atomic_fetch_add(&g_px_early, 1);
    pc_conn_send(c, data, len);
}

#define PX_BOTH "PROXY TCP4 192.0.2.8 127.0.0.1 1 2\r\nfirst"

/* A server with these callbacks, and a client that sent the header and
 * "first" in one segment and has read the greeting. */
static shim_sock_t px_both_start(void (*on_open)(pc_conn_t *),
                                 void (*on_data)(pc_conn_t *, const void *, size_t))
{
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    cfg.cb.on_open = on_open;
    cfg.cb.on_data = on_data;
    start_server(&cfg);
    shim_sock_t s = connect_nodelay(NULL);
    assert_int_equal(shim_send_all(s, PX_BOTH, strlen(PX_BOTH)), 0);
    char line[300];
    read_line(s, line, sizeof line);
    assert_string_equal(line, "peer=192.0.2.8:1 proxy=127.0.0.1 authority=-");
    return s;
}

/* px_both_start with an on_open that pauses (flicker: resumes and pauses
 * again) and an echo. */
static shim_sock_t px_pause_start(int flicker)
{
    g_px_flicker = flicker;
    atomic_store(&g_px_early, 0);
    atomic_store(&g_px_resumed, 0);
    return px_both_start(px_pause_open, px_echo_data);
}

static void pause_in_on_open_keeps_bytes(void **state)
{
    (void)state;
    shim_sock_t s = px_pause_start(0);
    char echo[5];
    assert_int_equal(shim_recv_exact(s, echo, 5), 5); /* after the resume */
    assert_memory_equal(echo, "first", 5);
    assert_int_equal(atomic_load(&g_px_resumed), 1);
    assert_int_equal(atomic_load(&g_px_early), 0);
    expect_echo(s, "more");
    assert_int_equal(stats().bytes_in, strlen(PX_BOTH) + 4);
    shim_close(s);
}

/* The same with a receive started while on_open ran (it resumed, then
 * paused again): bytes that receive brings go behind the kept ones, not
 * ahead (io_uring delivered "second" first). */
static void pause_in_on_open_then_more(void **state)
{
    (void)state;
    shim_sock_t s = px_pause_start(1);
    shim_sleep_ms(50);
    assert_int_equal(shim_send_all(s, "second", 6), 0);
    char echo[11];
    assert_int_equal(shim_recv_exact(s, echo, 11), 11);
    assert_memory_equal(echo, "firstsecond", 11);
    assert_int_equal(atomic_load(&g_px_early), 0);
    assert_int_equal(stats().bytes_in, strlen(PX_BOTH) + 6);
    shim_close(s);
}

/* on_open closes the connection (after its greeting) while the header's
 * segment also carried "first": a closing connection reads and discards,
 * so on_data never sees those bytes, and the client gets the greeting and
 * a FIN. */
static atomic_int g_px_data_calls;

static void px_open_close(pc_conn_t *c)
{
    px_on_open(c);
    assert_int_equal(pc_conn_close(c), 0);
}

static void px_count_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    atomic_fetch_add(&g_px_data_calls, 1);
}

static void close_in_on_open_drops_bytes(void **state)
{
    (void)state;
    atomic_store(&g_px_data_calls, 0);
    shim_sock_t s = px_both_start(px_open_close, px_count_data);
    size_t n = 0;
    assert_int_equal(shim_wait_close(s, &n), 0);
    assert_int_equal(n, 0);
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    assert_int_equal(atomic_load(&g_px_data_calls), 0);
    assert_int_equal(atomic_load(&g_closes), 1);
}

/* The trusted-proxy set is owned by the server as the rule set is: the same
 * set given as both (or swapped in as the rules later) would be freed twice.
 * Both calls refuse it, and the server goes on with what it had. */
static void rules_same_as_trusted_refused(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.1/32\n");
    pc_rules_t *trusted = cfg.proxy_trusted;
    cfg.rules = trusted;
    pc_server_t *s = NULL;
    assert_int_equal(pc_server_create(&cfg, &s), PC_EINVAL);
    assert_null(s);
    cfg.rules = NULL;
    start_server(&cfg); /* owns trusted now */
    assert_int_equal(pc_server_set_rules(g_srv, trusted), PC_EINVAL);
    assert_int_equal(stats().rule_count, 0);
    assert_int_equal(pc_rules_count(trusted), 1); /* still the server's, alive */
}

/* proxy_versions 0 and proxy_timeout_ms 0 are the defaults (both versions,
 * 3000 ms), not "no version" and "no time": a v1 header sent a byte at a
 * time over some 80 ms is taken. */
static void zero_versions_and_timeout_are_defaults(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    px_config(&cfg, "allow 127.0.0.0/8\n");
    cfg.proxy_versions = 0;
    cfg.proxy_timeout_ms = 0;
    start_server(&cfg);
    const char *h = "PROXY TCP4 192.0.2.9 127.0.0.1 5556 80\r\n";
    expect_greeting(NULL, h, strlen(h), 1, "peer=192.0.2.9:5556 proxy=127.0.0.1 authority=-");
    WAIT_FOR(stats().active == 0, 5000);
    assert_int_equal(stats().proxy_headers, 1);
    assert_int_equal(stats().proxy_timeouts, 0);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest all[] = {
        cmocka_unit_test_teardown(v1_byte_by_byte, teardown),
        cmocka_unit_test_teardown(v2_ipv4_ipv6_tlv_local, teardown),
        cmocka_unit_test_teardown(untrusted_header_is_data, teardown),
        cmocka_unit_test_teardown(trust_list_deny_is_untrusted, teardown),
        cmocka_unit_test_teardown(trusted_without_header_times_out, teardown),
        cmocka_unit_test_teardown(header_phase_ends_count_as_proxy, teardown),
        cmocka_unit_test_teardown(header_phase_sleeps_past_idle_deadline, teardown),
        cmocka_unit_test_teardown(malformed_headers, teardown),
        cmocka_unit_test_teardown(second_verdict_on_real_client, teardown),
        cmocka_unit_test_teardown(defer_on_real_client_rejects, teardown),
        cmocka_unit_test_teardown(local_header_judged_once, teardown),
        cmocka_unit_test_teardown(per_source_slots_released, teardown),
        cmocka_unit_test_teardown(proxy_over_ipv6, teardown),
        cmocka_unit_test_teardown(connect_ex_sends_header, teardown),
        cmocka_unit_test_teardown(pause_in_on_open_keeps_bytes, teardown),
        cmocka_unit_test_teardown(pause_in_on_open_then_more, teardown),
        cmocka_unit_test_teardown(rules_same_as_trusted_refused, teardown),
        cmocka_unit_test_teardown(zero_versions_and_timeout_are_defaults, teardown),
        cmocka_unit_test_teardown(close_in_on_open_drops_bytes, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(connect_ex_header_bytes, teardown), /* not on Windows */
#endif
    };
    if (PICK_TEST(all, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("proxy", all, NULL, NULL);
}
