/* SPDX-License-Identifier: MIT */
/* The eBPF tier of the kernel filter: the loaded program driven with
 * BPF_PROG_TEST_RUN on crafted Ethernet + IPv4/IPv6 + TCP packets (rules
 * against pc_rules_match, ACKs, the SYN bucket, blocked sources, shadow
 * mode, per-rule hits, rule swaps), then a real loopback listener. Needs
 * CAP_BPF and CAP_NET_ADMIN: without them every test prints
 * "skipped: needs CAP_BPF" and skips. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#ifndef PC_HAVE_EBPF
/* The tier is not built here (Windows, or no libbpf / bpf clang). */
int main(void)
{
    printf("skipped: eBPF tier not built\n");
    return 0;
}
#else

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include <bpf/bpf.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "filter/addr.h"
#include "filter/rules.h"
#include "iocp/bpf/kfilter_shared.h"
#include "iocp/kfilter_ebpf.h"
#include "bpf_caps.h"
#include "xorshift.h"

#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define TCP_RST 0x04

static const kf_ebpf_config_t plain = {
    .source_prefix_v4 = 32, .source_prefix_v6 = 128, .source_entries = 1024};

/* Open, or skip the test when the kernel refuses for privilege. */
static kf_ebpf_t *open_or_skip(const kf_ebpf_config_t *cfg, const pc_rules_t *r, int fd)
{
    kf_ebpf_t *k = NULL;
    char why[200] = "";
    int rc = kf_ebpf_open(cfg, r, fd, &k, why, sizeof why);
    if (rc == PC_EPERM && !bpf_caps_held()) {
        printf("skipped: needs CAP_BPF (%s)\n", why);
        skip();
    }
    if (rc != 0) fail_msg("kf_ebpf_open: %s (%s)", pc_err_name(rc), why);
    assert_non_null(k);
    assert_true(kf_ebpf_prog_fd(k) >= 0);
    return k;
}

static pc_rules_t *rules(const char *text)
{
    pc_rules_t *r = NULL;
    char err[200];
    int rc = pc_rules_load_string(text, strlen(text), NULL, &r, err, sizeof err);
    if (rc) fail_msg("rules: %s", err);
    return r;
}

/* Every packet is a new connection attempt (its own source port and
 * initial sequence number) unless a test names them: identical SYNs are
 * retransmissions, which the bucket does not charge twice. */
static atomic_uint g_attempt;

/* Ethernet + IP + TCP with the given source, flags, source port and
 * sequence number; returns the length. */
static size_t packet_id(uint8_t *p, const addr_t *src, uint8_t flags, uint16_t sport, uint32_t seq)
{
    memset(p, 0, 128);
    uint8_t *ip = p + 14, *tcp;
    if (src->family == 4) {
        p[12] = 0x08, p[13] = 0x00;
        ip[0] = 0x45;
        ip[3] = 40;
        ip[8] = 64;
        ip[9] = 6;
        memcpy(ip + 12, src->b, 4);
        ip[16] = 127, ip[19] = 1;
        tcp = ip + 20;
    } else {
        p[12] = 0x86, p[13] = 0xdd;
        ip[0] = 0x60;
        ip[5] = 20;
        ip[6] = 6;
        ip[7] = 64;
        memcpy(ip + 8, src->b, 16);
        ip[39] = 1;
        tcp = ip + 40;
    }
    tcp[0] = (uint8_t)(sport >> 8), tcp[1] = (uint8_t)sport; /* -> 80 */
    tcp[3] = 80;
    tcp[4] = (uint8_t)(seq >> 24), tcp[5] = (uint8_t)(seq >> 16);
    tcp[6] = (uint8_t)(seq >> 8), tcp[7] = (uint8_t)seq;
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14] = 0xff;
    return (size_t)(tcp + 20 - p);
}

static size_t packet(uint8_t *p, const addr_t *src, uint8_t flags)
{
    unsigned n = atomic_fetch_add(&g_attempt, 1);
    return packet_id(p, src, flags, (uint16_t)(1024 + n % 60000), n * 2654435761u);
}

/* Run the program on pkt (n bytes): 1 = passed, 0 = dropped. */
static int run_pkt(kf_ebpf_t *k, uint8_t *pkt, size_t n)
{
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (uint32_t)n, .repeat = 1);
    int err = bpf_prog_test_run_opts(kf_ebpf_prog_fd(k), &o);
    if (err) fail_msg("BPF_PROG_TEST_RUN: %s", strerror(errno));
    return o.retval != 0;
}

/* Insert opt IPv4 option words (0..10, NOPs) after the fixed header of the
 * IPv4 packet pkt (n bytes, room for 128); returns the new length. */
static size_t with_options(uint8_t *pkt, size_t n, unsigned opt)
{
    if (!opt) return n;
    memmove(pkt + 34 + 4 * opt, pkt + 34, n - 34);
    memset(pkt + 34, 1, 4 * opt);
    pkt[14] = (uint8_t)(0x40 | (5 + opt));
    pkt[17] = (uint8_t)(40 + 4 * opt);
    return n + 4 * opt;
}

/* Run the program on one packet: 1 = passed, 0 = dropped. opt: IPv4 option
 * words (0..10) inserted after the fixed header. */
static int run_opt(kf_ebpf_t *k, const addr_t *src, uint8_t flags, unsigned opt)
{
    uint8_t pkt[128];
    size_t n = with_options(pkt, packet(pkt, src, flags), opt);
    return run_pkt(k, pkt, n);
}

static int run(kf_ebpf_t *k, const addr_t *src, uint8_t flags)
{
    return run_opt(k, src, flags, 0);
}

static addr_t addr(const char *s)
{
    addr_t a;
    const char *why;
    if (addr_parse(s, strlen(s), &a, &why)) fail_msg("%s: %s", s, why);
    return a;
}

static int syn(kf_ebpf_t *k, const char *s)
{
    addr_t a = addr(s);
    return run(k, &a, TCP_SYN);
}

/* pc_rules_match's verdict: 1 = pass (allow or no match), 0 = deny. */
static int reference(const pc_rules_t *r, const addr_t *a, size_t *rule)
{
    struct sockaddr_storage ss;
    assert_true(addr_to_sockaddr(a, 0, (struct sockaddr *)&ss, sizeof ss) > 0);
    pc_rule_action_t act;
    int m = pc_rules_match(r, (struct sockaddr *)&ss, &act, rule);
    assert_true(m >= 0);
    return !(m == 1 && act == PC_RULE_DENY);
}

/* ---- rules ---------------------------------------------------------------- */

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    return xorshift64(&rnd_state);
}

/* A random address near the interesting part of the space: IPv4 in
 * 10.0.0.0/14 (so prefixes overlap), IPv6 in 2001:db8::/44 and a few bits
 * far down (so /64../128 nest). */
static addr_t rnd_addr(int family)
{
    addr_t a = {.family = (uint8_t)family};
    uint64_t x = rnd();
    if (family == 4) {
        uint32_t v = 0x0a000000u | (uint32_t)(x & 0x3ffff);
        if (x >> 60 == 0) v = (uint32_t)(x >> 20); /* anywhere */
        a.b[0] = (uint8_t)(v >> 24), a.b[1] = (uint8_t)(v >> 16);
        a.b[2] = (uint8_t)(v >> 8), a.b[3] = (uint8_t)v;
    } else {
        uint64_t hi = 0x20010db800000000ull | (x & 0xfffff), lo = rnd() & 0xff000000000000ffull;
        if (x >> 60 == 0) hi = rnd(), lo = rnd();
        addr_store_be64(a.b, hi);
        addr_store_be64(a.b + 8, lo);
    }
    return a;
}

static unsigned rnd_len(int family)
{
    unsigned bits = family == 4 ? 32 : 128;
    switch (rnd() % 8) {
    case 0:
        return rnd() % 50 == 0 ? 0 : bits; /* edges: /0 rarely, /32 or /128 */
    case 1:
        return bits;
    default:
        return family == 4 ? 14 + (unsigned)(rnd() % 19) : 40 + (unsigned)(rnd() % 89);
    }
}

static char *rnd_rules(size_t n, addr_t *probe, size_t *nprobe)
{
    unsigned *plen = calloc(n + 1, sizeof *plen);
    assert_non_null(plen);
    size_t cap = n * 64 + 1, len = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    size_t first = *nprobe;
    for (size_t i = 0; i < n; i++) {
        int fam = rnd() % 3 ? 4 : 6;
        addr_t a = rnd_addr(fam);
        unsigned l = rnd_len(fam);
        addr_mask(&a, l);
        int dup = 0; /* a prefix twice is a parse error: skip it */
        for (size_t j = first; j < *nprobe && !dup; j += 3)
            dup = memcmp(&probe[j], &a, sizeof a) == 0 && plen[(j - first) / 3] == l;
        if (dup) continue;
        plen[(*nprobe - first) / 3] = l;
        char s[PC_ADDR_STRLEN];
        addr_format(&a, s, sizeof s);
        len +=
            (size_t)snprintf(t + len, cap - len, "%s %s/%u\n", rnd() % 3 ? "deny" : "allow", s, l);
        /* probes at the prefix's first address, its last, and just past it */
        probe[(*nprobe)++] = a;
        addr_t e = a;
        unsigned bits = addr_bits(&a);
        for (unsigned b = l; b < bits; b++)
            e.b[b / 8] |= (uint8_t)(0x80 >> (b % 8));
        probe[(*nprobe)++] = e;
        for (int j = (int)bits / 8 - 1; j >= 0; j--)
            if (++e.b[j]) break;
        probe[(*nprobe)++] = e;
    }
    free(plen);
    return t;
}

static void rules_match_reference(void **state)
{
    for (int round = 0; round < 6; round++) {
        size_t n = round == 0  ? 1
                   : round < 3 ? 20
                   : round < 5 ? 400
                               : 3000; /* both IPv4 searches */
        size_t np = 0, nmax = 3 * n + 3000;
        addr_t *probe = calloc(nmax, sizeof *probe);
        assert_non_null(probe);
        char *text = rnd_rules(n, probe, &np);
        while (np < nmax)
            probe[np++] = rnd_addr(rnd() % 2 ? 4 : 6);
        pc_rules_t *r = rules(text);
        kf_ebpf_t *k = open_or_skip(&plain, r, -1);
        size_t nr = pc_rules_count(r);
        uint64_t *want = calloc(nr + 1, sizeof *want);
        assert_non_null(want);
        size_t denied = 0;
        for (size_t i = 0; i < np; i++) {
            size_t rule = SIZE_MAX;
            int exp = reference(r, &probe[i], &rule);
            int got = run(k, &probe[i], TCP_SYN);
            if (got != exp) {
                char s[PC_ADDR_STRLEN];
                addr_format(&probe[i], s, sizeof s);
                fail_msg("round %d: %s: program %s, reference %s\nrules:\n%s", round, s,
                         got ? "passes" : "drops", exp ? "passes" : "drops", text);
            }
            if (!exp) want[rule]++, denied++;
        }
        kf_ebpf_collect_hits(k, r);
        for (size_t i = 0; i < nr; i++) {
            pc_rule_info_t info;
            assert_int_equal(pc_rules_get(r, i, &info), 0);
            assert_int_equal(info.hits, want[i]);
        }
        kf_ebpf_stats_t st;
        kf_ebpf_stats(k, &st);
        assert_int_equal(st.syn_seen, np);
        assert_int_equal(st.dropped_rules, denied);
        kf_ebpf_collect_hits(k, r); /* nothing new: counts stay */
        for (size_t i = 0; i < nr; i++) {
            pc_rule_info_t info;
            assert_int_equal(pc_rules_get(r, i, &info), 0);
            assert_int_equal(info.hits, want[i]);
        }
        kf_ebpf_close(k, -1);
        pc_rules_free(r);
        free(want);
        free(text);
        free(probe);
    }
}

static void edges_and_exceptions(void **state)
{
    pc_rules_t *r =
        rules("deny 0.0.0.0/0\nallow 10.0.0.0/8\ndeny 10.1.0.0/16\nallow 10.1.2.3/32\n"
              "deny ::/0\nallow 2001:db8::/32\ndeny 2001:db8::1/128\n"
              "allow 255.255.255.255/32\nallow ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    assert_false(syn(k, "1.2.3.4"));
    assert_false(syn(k, "0.0.0.0"));
    assert_true(syn(k, "10.0.0.1"));
    assert_false(syn(k, "10.1.0.0"));
    assert_false(syn(k, "10.1.2.2"));
    assert_true(syn(k, "10.1.2.3"));
    assert_false(syn(k, "10.1.2.4"));
    assert_true(syn(k, "10.2.0.0"));
    assert_false(syn(k, "11.0.0.0"));
    assert_false(syn(k, "255.255.255.254"));
    assert_true(syn(k, "255.255.255.255"));
    assert_false(syn(k, "::"));
    assert_false(syn(k, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(syn(k, "2001:db8::"));
    assert_false(syn(k, "2001:db8::1"));
    assert_true(syn(k, "2001:db8::2"));
    assert_true(syn(k, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(syn(k, "2001:db9::"));
    assert_true(syn(k, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    /* an IPv4-mapped source meets the IPv4 rules, as in user space */
    assert_true(syn(k, "::ffff:10.1.2.3"));
    assert_false(syn(k, "::ffff:10.1.2.4"));
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* IPv6 prefixes in the lower half of :: whose end (start + size) carries
 * into the upper 64 bits: the range after them begins at 0:0:0:1:: and
 * passes (the end must not be taken for a wrap past the top). */
static void ends_carrying_into_high_half(void **state)
{
    static const char *const sets[] = {"deny ::8000:0:0:0/65\n",
                                       "deny ::ffff:ffff:ffff:ffff/128\n"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        pc_rules_t *r = rules(sets[i]);
        kf_ebpf_t *k = open_or_skip(&plain, r, -1);
        assert_false(syn(k, "::ffff:ffff:ffff:ffff"));
        assert_true(syn(k, "0:0:0:1::"));
        assert_true(syn(k, "0:0:0:1::1"));
        assert_true(syn(k, "2001:db8::1"));
        assert_true(syn(k, "::7fff:ffff:ffff:ffff"));
        kf_ebpf_close(k, -1);
        pc_rules_free(r);
    }
}

/* Run the program on a packet from src with flags, its Ethernet type as
 * built (IPv6 for an IPv6 source) or, with !marked, IPv4 whatever it holds. */
static int run_marked(kf_ebpf_t *k, const addr_t *src, uint8_t flags, int marked)
{
    uint8_t pkt[128];
    size_t n = packet(pkt, src, flags);
    if (!marked) pkt[12] = 0x08, pkt[13] = 0x00;
    return run_pkt(k, pkt, n);
}

/* The IPv6 headers' two reads: one for a packet the kernel marked IPv6
 * (its Ethernet type here; the driver's on a real socket), the IPv4-sized
 * read and a second one for IPv6 in a packet marked otherwise. Either way a
 * denied source's SYN drops and its ACK passes; a packet too short for TCP,
 * one that is not TCP, and TCP behind an extension header pass (the accept
 * thread judges what gets through). */
static void ipv6_header_reads(void **state)
{
    pc_rules_t *r = rules("deny 2001:db8::/32\ndeny 192.0.2.0/24\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    addr_t bad = addr("2001:db8::1"), good = addr("2001:db9::1");
    uint8_t pkt[128];
    for (int marked = 1; marked >= 0; marked--) {
        if (run_marked(k, &bad, TCP_SYN, marked))
            fail_msg("a denied IPv6 SYN (marked %d) passed", marked);
        if (!run_marked(k, &bad, TCP_SYN | TCP_ACK, marked))
            fail_msg("an IPv6 SYN-ACK (marked %d) dropped", marked);
        if (!run_marked(k, &good, TCP_SYN, marked))
            fail_msg("an allowed IPv6 SYN (marked %d) dropped", marked);
    }
    /* the one read takes 54 bytes: a SYN that ends with the TCP flags is
     * judged, one a byte shorter is not TCP */
    size_t n = packet(pkt, &bad, TCP_SYN);
    pkt[14 + 5] = 14;
    assert_false(run_pkt(k, pkt, 14 + 40 + 14));
    pkt[14 + 5] = 13;
    assert_true(run_pkt(k, pkt, 14 + 40 + 13));
    /* marked IPv6, version 4 inside (never delivered by the kernel): the
     * one read sees no IPv6 header and passes it; a program that never took
     * that read would judge it as IPv4, against the IPv4 deny rule */
    addr_t bad4 = addr("192.0.2.1");
    n = packet(pkt, &bad4, TCP_SYN);
    memset(pkt + n, 0, 14 + 54 - n);        /* long enough for the 54-byte read */
    assert_false(run_pkt(k, pkt, 14 + 54)); /* marked IPv4: denied */
    pkt[12] = 0x86, pkt[13] = 0xdd;
    assert_true(run_pkt(k, pkt, 14 + 54));
    /* next header UDP, the same bytes after it */
    n = packet(pkt, &bad, TCP_SYN);
    pkt[14 + 6] = 17;
    assert_true(run_pkt(k, pkt, n));
    /* a hop-by-hop header (8 bytes) before TCP */
    n = packet(pkt, &bad, TCP_SYN);
    memmove(pkt + 14 + 48, pkt + 14 + 40, n - 14 - 40);
    memset(pkt + 14 + 40, 0, 8);
    pkt[14 + 40] = 6; /* its next header: TCP */
    pkt[14 + 6] = 0;  /* hop-by-hop */
    pkt[14 + 5] = 28;
    assert_true(run_pkt(k, pkt, n + 8));
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* A prefix that ends just below ::ffff:0:0/96 puts a range boundary at
 * ::ffff:0:0. The loader gives every range starting in the mapped /96 the
 * value 0 ("moot": mapped sources go to the IPv4 table), but that range runs
 * on past the mapped space up to the next boundary: here 0:0:0:0:0:1::
 * onwards, which ::/64 denies in user space. */
static void mapped_space_boundary(void **state)
{
    pc_rules_t *r = rules("deny ::/64\nallow ::fffe:0:0/96\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    const char *probes[] = {"::1", "::fffe:0:1", "::1:0:0:0", "::1:0:0:1", "::ffff:ffff:ffff:ffff"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        addr_t a = addr(probes[i]);
        int exp = reference(r, &a, NULL), got = run(k, &a, TCP_SYN);
        if (got != exp)
            fail_msg("%s: program %s, pc_rules_match %s", probes[i], got ? "passes" : "drops",
                     exp ? "passes" : "drops");
    }
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* Differential, other shapes: IPv4 prefixes of every length 0..32 packed
 * into a few /16 blocks (idx4 bounds at block edges, > KF_SMALL4 ranges),
 * IPv6 prefixes of every length 0..128 under a few top bits; probes at every
 * boundary +-1 and at every /16 block edge. */
static void rules_match_reference_shapes(void **state)
{
    for (int round = 0; round < 8; round++) {
        size_t n = round < 4 ? 700 : 5000;
        size_t cap = n * 64 + 1, len = 0, np = 0, pcap = n * 8 + 4096;
        char *text = malloc(cap);
        addr_t *probe = calloc(pcap, sizeof *probe);
        assert_non_null(text);
        assert_non_null(probe);
        text[0] = 0;
        for (size_t i = 0; i < n; i++) {
            int fam = rnd() % 4 ? 4 : 6;
            addr_t a = {.family = (uint8_t)fam};
            unsigned l;
            if (fam == 4) {
                uint32_t v =
                    (0x0a000000u + (uint32_t)(rnd() % 3) * 0x10000u) | (uint32_t)(rnd() & 0xffff);
                if (rnd() % 16 == 0) v = (uint32_t)rnd();
                l = (unsigned)(rnd() % 33);
                if (l < 14 && rnd() % 4) l += 14;
                a.b[0] = (uint8_t)(v >> 24), a.b[1] = (uint8_t)(v >> 16),
                a.b[2] = (uint8_t)(v >> 8), a.b[3] = (uint8_t)v;
            } else {
                uint64_t hi = (rnd() % 4) << 62 | (rnd() & 0xffff), lo = rnd();
                if (rnd() % 2) lo &= 0xffffull;
                addr_store_be64(a.b, hi);
                addr_store_be64(a.b + 8, lo);
                l = (unsigned)(rnd() % 129);
            }
            addr_mask(&a, l);
            if (fam == 6 && l >= 96 && addr_is_v4mapped(&a)) continue;
            char sx[PC_ADDR_STRLEN];
            addr_format(&a, sx, sizeof sx);
            char line[96];
            int ll = snprintf(line, sizeof line, "%s %s/%u\n", rnd() % 3 ? "deny" : "allow", sx, l);
            if (strstr(text, line + (line[0] == 'd' ? 5 : 6))) continue; /* same prefix: skip */
            memcpy(text + len, line, (size_t)ll + 1);
            len += (size_t)ll;
            addr_t e = a;
            unsigned bits = addr_bits(&a);
            for (unsigned b = l; b < bits; b++)
                e.b[b / 8] |= (uint8_t)(0x80 >> (b % 8));
            addr_t before = a, after = e;
            for (int j = (int)bits / 8 - 1; j >= 0; j--)
                if (before.b[j]--) break;
            for (int j = (int)bits / 8 - 1; j >= 0; j--)
                if (++after.b[j]) break;
            probe[np++] = a, probe[np++] = e, probe[np++] = before, probe[np++] = after;
        }
        for (uint32_t blk = 0x0a00; blk < 0x0a04 && np + 3 < pcap; blk++) {
            for (int d = -1; d <= 1; d++) {
                uint32_t v = (blk << 16) + (uint32_t)d;
                addr_t a = {.family = 4};
                a.b[0] = (uint8_t)(v >> 24), a.b[1] = (uint8_t)(v >> 16),
                a.b[2] = (uint8_t)(v >> 8), a.b[3] = (uint8_t)v;
                probe[np++] = a;
            }
        }
        while (np < pcap)
            probe[np++] = rnd_addr(rnd() % 2 ? 4 : 6);
        pc_rules_t *r = rules(text);
        kf_ebpf_t *k = open_or_skip(&plain, r, -1);
        for (size_t i = 0; i < np; i++) {
            if (probe[i].family == 6 && addr_is_v4mapped(&probe[i])) continue;
            int exp = reference(r, &probe[i], NULL), got = run(k, &probe[i], TCP_SYN);
            if (got != exp) {
                char sx[PC_ADDR_STRLEN];
                addr_format(&probe[i], sx, sizeof sx);
                fail_msg("round %d: %s: program %s, reference %s", round, sx,
                         got ? "passes" : "drops", exp ? "passes" : "drops");
            }
        }
        kf_ebpf_close(k, -1);
        pc_rules_free(r);
        free(text);
        free(probe);
    }
}

static void non_syn_passes(void **state)
{
    pc_rules_t *r = rules("deny 0.0.0.0/0\ndeny ::/0\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    const char *srcs[] = {"192.0.2.1", "2001:db8::5"};
    for (int i = 0; i < 2; i++) {
        addr_t a = addr(srcs[i]);
        assert_false(run(k, &a, TCP_SYN));
        assert_true(run(k, &a, TCP_ACK));
        assert_true(run(k, &a, TCP_SYN | TCP_ACK));
        assert_true(run(k, &a, TCP_RST));
        assert_true(run(k, &a, 0x18)); /* PSH|ACK */
    }
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_seen, 2);
    assert_int_equal(st.dropped_rules, 2);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* IPv4 headers with options: the TCP header is found by the IHL. */
static void ipv4_options(void **state)
{
    pc_rules_t *r = rules("deny 192.0.2.0/24\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    addr_t d = addr("192.0.2.1"), p = addr("198.51.100.1");
    for (unsigned opt = 0; opt <= 10; opt++) {
        assert_false(run_opt(k, &d, TCP_SYN, opt));
        assert_true(run_opt(k, &d, TCP_ACK, opt));
        assert_true(run_opt(k, &d, TCP_SYN | TCP_ACK, opt));
        assert_true(run_opt(k, &p, TCP_SYN, opt));
    }
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_seen, 22);
    assert_int_equal(st.dropped_rules, 11);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* IPv4 headers the kernel never hands a socket, found by
 * test_kfilter_ebpf_random: an IHL below 5 made the program read the TCP
 * header inside the IP header, and a fragment past the first had its
 * payload read as TCP; both pass now (nothing to judge), while a first
 * fragment (more-fragments set, offset 0) still carries the header and is
 * judged. */
static void ipv4_malformed(void **state)
{
    pc_rules_t *r = rules("deny 192.0.0.0/8\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, -1);
    addr_t d = addr("192.0.2.1");
    uint8_t pkt[128];
    for (unsigned ihl = 0; ihl < 5; ihl++) {
        /* the byte the old reading took as flags (IP byte 4 * ihl + 13,
         * with IHL 0 the source's second byte: still in 192/8): a SYN */
        size_t n = packet_id(pkt, &d, TCP_ACK, 1234, 0x02020202u);
        pkt[14] = (uint8_t)(0x40 | ihl);
        pkt[14 + 4 * ihl + 13] = TCP_SYN;
        if (!run_pkt(k, pkt, n)) fail_msg("IHL %u: dropped", ihl);
    }
    size_t n = packet_id(pkt, &d, TCP_SYN, 1234, 1);
    pkt[14 + 6] = 0x20; /* more fragments, offset 0: the first */
    assert_false(run_pkt(k, pkt, n));
    for (unsigned off = 1; off < 0x2000; off <<= 1) {
        n = packet_id(pkt, &d, TCP_SYN, 1234, 1);
        pkt[14 + 6] = (uint8_t)(off >> 8), pkt[14 + 7] = (uint8_t)off;
        if (!run_pkt(k, pkt, n)) fail_msg("fragment at offset %u: dropped", off);
        pkt[14 + 6] |= 0x20; /* and with more fragments */
        if (!run_pkt(k, pkt, n)) fail_msg("fragment at offset %u, more: dropped", off);
    }
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_seen, 1);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* ---- bucket, blocked sources, shadow ---------------------------------------- */

static void rate_bucket(void **state)
{
    kf_ebpf_config_t c = plain;
    c.rate = 1; /* one token a second: a stall under 1 s cannot refill */
    c.burst = 5;
    c.source_prefix_v4 = 24;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    /* a bucket of one: an idle source restarts from now, which leaves it
     * no time ahead to spare */
    kf_ebpf_config_t c1 = plain;
    c1.rate = 1;
    c1.burst = 1;
    kf_ebpf_t *k1 = open_or_skip(&c1, NULL, -1);
    assert_true(syn(k1, "192.0.2.7"));
    assert_false(syn(k1, "192.0.2.7"));
    int passed = 0;
    for (int i = 0; i < 5; i++)
        passed += syn(k, i % 2 ? "192.0.2.1" : "192.0.2.200"); /* same /24 */
    assert_int_equal(passed, 5);
    assert_false(syn(k, "192.0.2.7"));
    assert_false(syn(k, "192.0.2.7"));
    assert_true(syn(k, "192.0.3.1"));   /* another source has its own bucket */
    assert_true(syn(k, "2001:db8::1")); /* and IPv6 too */
    assert_true(syn(k, "2001:db8::1"));
    struct timespec ts = {.tv_sec = 1, .tv_nsec = 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_true(syn(k, "192.0.2.7")); /* refilled: >= 1 token after 1.3 s */
    assert_true(syn(k1, "192.0.2.7"));
    kf_ebpf_close(k1, -1);
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.dropped_rate, 2);
    assert_int_equal(st.would_drop, 0);
    assert_int_equal(st.syn_seen, 11);
    kf_ebpf_close(k, -1);
}

/* Source prefixes of length 0: every IPv4 source shares one bucket, every
 * IPv6 source another. */
static void rate_bucket_prefix_zero(void **state)
{
    kf_ebpf_config_t c = plain;
    c.rate = 0.001; /* no refill during the test */
    c.burst = 2;
    c.source_prefix_v4 = 0;
    c.source_prefix_v6 = 0;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    assert_true(syn(k, "192.0.2.1"));
    assert_true(syn(k, "198.51.100.1"));
    assert_false(syn(k, "203.0.113.9"));
    assert_false(syn(k, "255.255.255.255"));
    assert_true(syn(k, "2001:db8::1"));
    assert_true(syn(k, "fe80::2"));
    assert_false(syn(k, "3fff::3"));
    kf_ebpf_close(k, -1);
}

/* A retransmitted SYN (the source address, port and initial sequence
 * number of one that took a token) passes without a token, KF_RETX_MAX
 * times at most; any other attempt of the source still finds the bucket
 * empty, and a SYN the bucket dropped earns no free repeats. A source
 * remembers its last KF_SLOTS attempts. */
static void rate_retransmit(void **state)
{
    kf_ebpf_config_t c = plain;
    c.rate = 0.001; /* no refill during the test */
    c.burst = 1;
    c.source_prefix_v4 = 24;
    c.source_prefix_v6 = 64;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    /* IPv4, IPv6, IPv4 with options (the TCP header read on its own) */
    static const struct {
        const char *src, *neighbour; /* same bucket */
        unsigned opt;
    } cs[] = {{"192.0.2.5", "192.0.2.6", 0},
              {"2001:db8::5", "2001:db8::6", 0},
              {"203.0.113.5", "203.0.113.6", 3}};
    enum { NC = sizeof cs / sizeof cs[0] };
    for (int f = 0; f < NC; f++) {
        addr_t a = addr(cs[f].src), b = addr(cs[f].neighbour);
        uint8_t first[128], port[128], isn[128], nb[128];
        unsigned o = cs[f].opt;
        size_t n = with_options(first, packet_id(first, &a, TCP_SYN, 40000, 0x12345678), o);
        with_options(port, packet_id(port, &a, TCP_SYN, 40001, 0x12345678), o);
        with_options(isn, packet_id(isn, &a, TCP_SYN, 40000, 0x12345679), o);
        with_options(nb, packet_id(nb, &b, TCP_SYN, 40000, 0x12345678), o);
        assert_true(run_pkt(k, first, n)); /* takes the one token */
        assert_false(run_pkt(k, port, n)); /* new attempts: the bucket is empty */
        assert_false(run_pkt(k, isn, n));
        assert_false(run_pkt(k, nb, n));
        for (unsigned i = 0; i < KF_RETX_MAX; i++)
            if (!run_pkt(k, first, n)) fail_msg("case %d: retransmission %u dropped", f, i + 1);
        assert_false(run_pkt(k, first, n)); /* no free repeat left: charged, bucket empty */
        assert_false(run_pkt(k, port, n));  /* dropped before: not an attempt that took a token */
    }
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_retransmits, NC * KF_RETX_MAX);
    assert_int_equal(st.dropped_rate, NC * 5);
    assert_int_equal(st.syn_seen, NC * (KF_RETX_MAX + 6));
    kf_ebpf_close(k, -1);

    /* a source remembers its last KF_SLOTS attempts that took a token, also
     * when they all came within one time unit */
    enum { NA = KF_SLOTS + 2 };
    c.burst = NA;
    k = open_or_skip(&c, NULL, -1);
    addr_t a = addr("198.51.100.7");
    uint8_t att[NA][128];
    size_t n = 0;
    for (int i = 0; i < NA; i++) {
        n = packet_id(att[i], &a, TCP_SYN, (uint16_t)(50000 + i), 777);
        assert_true(run_pkt(k, att[i], n));
    }
    for (int i = NA - KF_SLOTS; i < NA; i++)
        if (!run_pkt(k, att[i], n)) fail_msg("attempt %d of %d: retransmission dropped", i + 1, NA);
    for (int i = 0; i < NA - KF_SLOTS; i++) /* forgotten: charged, no token left */
        if (run_pkt(k, att[i], n)) fail_msg("attempt %d of %d: passed free", i + 1, NA);
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_retransmits, KF_SLOTS);
    assert_int_equal(st.dropped_rate, NA - KF_SLOTS);
    kf_ebpf_close(k, -1);

    /* an attempt whose free repeats are used up takes a token again in its
     * own slot: the source's other attempts stay remembered, the oldest too */
    c.burst = KF_SLOTS + 1;
    k = open_or_skip(&c, NULL, -1);
    for (int i = 0; i < KF_SLOTS; i++) {
        n = packet_id(att[i], &a, TCP_SYN, (uint16_t)(50000 + i), 777);
        assert_true(run_pkt(k, att[i], n));
    }
    int last = KF_SLOTS - 1; /* the newest */
    for (unsigned i = 0; i < KF_RETX_MAX; i++)
        assert_true(run_pkt(k, att[last], n));
    assert_true(run_pkt(k, att[last], n)); /* used up: takes the last token */
    if (!run_pkt(k, att[0], n)) fail_msg("the oldest attempt was forgotten");
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_retransmits, KF_RETX_MAX + 1);
    assert_int_equal(st.dropped_rate, 0);
    kf_ebpf_close(k, -1);
}

/* Racing CPUs: threads sending SYNs of one source at once get the burst,
 * plus at most one SYN per extra thread (docs/kernel-filter-ebpf.md). */
typedef struct racer_s {
    kf_ebpf_t *k;
    int passed;
} racer_t;

static void *racer(void *arg)
{
    racer_t *r = arg;
    addr_t a = addr("192.0.2.99");
    for (int i = 0; i < 400; i++)
        r->passed += run(r->k, &a, TCP_SYN);
    return NULL;
}

static void rate_bucket_race(void **state)
{
    kf_ebpf_config_t c = plain;
    c.rate = 0.001; /* no refill during the test */
    c.burst = 100;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    enum { T = 4 };
    racer_t r[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        r[i] = (racer_t){k, 0};
        assert_int_equal(pthread_create(&th[i], NULL, racer, &r[i]), 0);
    }
    int passed = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        passed += r[i].passed;
    }
    printf("racing threads: %d of %d SYNs passed a burst of 100\n", passed, T * 400);
    if (passed < 100 || passed > 100 + T - 1) fail_msg("%d SYNs passed a burst of 100", passed);
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_seen, T * 400);
    assert_int_equal(st.dropped_rate, (uint64_t)(T * 400 - passed));
    kf_ebpf_close(k, -1);
}

static void blocked_sources(void **state)
{
    kf_ebpf_config_t c = plain;
    c.block_sources = 1;
    c.source_prefix_v4 = 24;
    c.source_prefix_v6 = 64;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    addr_t a = addr("198.51.100.9"), b = addr("2001:db8:1:2::77");
    assert_true(syn(k, "198.51.100.77"));
    assert_int_equal(kf_ebpf_block_source(k, &a, 1), 0);
    assert_int_equal(kf_ebpf_block_source(k, &b, 1), 0);
    assert_false(syn(k, "198.51.100.77")); /* same /24 */
    assert_true(syn(k, "198.51.101.77"));
    assert_false(syn(k, "2001:db8:1:2:ffff::1")); /* same /64 */
    assert_true(syn(k, "2001:db8:1:3::77"));
    addr_t ack = addr("198.51.100.77");
    assert_true(run(k, &ack, TCP_ACK)); /* established traffic still flows */
    assert_int_equal(kf_ebpf_block_source(k, &a, 0), 0);
    assert_true(syn(k, "198.51.100.77"));
    assert_int_equal(kf_ebpf_block_source(k, &a, 0), 0); /* unblocking twice is fine */
    /* no rate: no bucket, so a repeated SYN is no retransmission passed free */
    uint8_t pkt[128];
    size_t n = packet_id(pkt, &ack, TCP_SYN, 40000, 0x12345678);
    for (int i = 0; i < 3; i++)
        assert_true(run_pkt(k, pkt, n));
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.dropped_max, 2);
    assert_int_equal(st.syn_retransmits, 0);
    kf_ebpf_close(k, -1);
}

static void shadow_mode(void **state)
{
    kf_ebpf_config_t c = plain;
    c.block_sources = 1;
    c.shadow = 1;
    c.rate = 1;
    c.burst = 2;
    pc_rules_t *r = rules("deny 203.0.113.0/24\n");
    kf_ebpf_t *k = open_or_skip(&c, r, -1);
    addr_t blk = addr("198.51.100.1");
    assert_int_equal(kf_ebpf_block_source(k, &blk, 1), 0);
    assert_true(syn(k, "203.0.113.5"));  /* denied by rule: would drop */
    assert_true(syn(k, "198.51.100.1")); /* blocked: would drop */
    assert_true(syn(k, "192.0.2.1"));
    assert_true(syn(k, "192.0.2.1"));
    assert_true(syn(k, "192.0.2.1")); /* bucket empty: would drop */
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_int_equal(st.syn_seen, 5);
    assert_int_equal(st.would_drop, 3);
    assert_int_equal(st.dropped_rules + st.dropped_rate + st.dropped_max, 0);
    kf_ebpf_collect_hits(k, r); /* user space counts shadow hits, not the kernel */
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r, 0, &info), 0);
    assert_int_equal(info.hits, 0);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

static void swap_rules(void **state)
{
    pc_rules_t *r1 = rules("deny 192.0.2.0/24\nallow 192.0.2.1/32\ndeny 2001:db8::/32\n");
    pc_rules_t *r2 = rules("deny 198.51.100.0/24\n");
    kf_ebpf_config_t c = plain;
    c.block_sources = 1;
    kf_ebpf_t *k = open_or_skip(&c, r1, -1);
    addr_t blk = addr("203.0.113.1");
    assert_int_equal(kf_ebpf_block_source(k, &blk, 1), 0);
    assert_false(syn(k, "192.0.2.9"));
    assert_false(syn(k, "192.0.2.10"));
    assert_true(syn(k, "192.0.2.1"));
    assert_false(syn(k, "2001:db8::9"));
    int old_fd = kf_ebpf_prog_fd(k);
    char why[200] = "";
    assert_int_equal(kf_ebpf_set_rules(k, r1, r2, why, sizeof why), 0);
    assert_true(kf_ebpf_prog_fd(k) >= 0);
    (void)old_fd;
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r1, 0, &info), 0);
    assert_int_equal(info.hits, 2); /* folded at the swap */
    assert_int_equal(pc_rules_get(r1, 2, &info), 0);
    assert_int_equal(info.hits, 1);
    assert_true(syn(k, "192.0.2.9"));
    assert_true(syn(k, "2001:db8::9"));
    assert_false(syn(k, "198.51.100.3"));
    assert_false(syn(k, "203.0.113.1")); /* blocked sources survive the swap */
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st); /* and so do the counters */
    assert_int_equal(st.syn_seen, 8);
    assert_int_equal(st.dropped_rules, 4);
    assert_int_equal(st.dropped_max, 1);
    kf_ebpf_collect_hits(k, r2);
    assert_int_equal(pc_rules_get(r2, 0, &info), 0);
    assert_int_equal(info.hits, 1);
    /* swapping to no rules at all */
    assert_int_equal(kf_ebpf_set_rules(k, r2, NULL, why, sizeof why), 0);
    assert_true(syn(k, "198.51.100.3"));
    kf_ebpf_close(k, -1);
    pc_rules_free(r1);
    pc_rules_free(r2);
}

/* The kernel preallocates every entry of the source maps, so a map the
 * configuration does not use gets one entry; the sizes hold across a rule
 * swap (the maps are reused), and a full blocked map is an error. That the
 * program skips the empty blocked map without block_sources shows only in
 * pc-kfilter-ebpf-bench (nothing can be marked to tell); with it, a marked
 * source must be dropped, so the lookup is not skipped then. */
static void source_maps_sized_by_use(void **state)
{
    static const struct {
        double rate;
        int block;
        unsigned entries, want_buckets, want_blocked;
    } cs[] = {{0, 0, 1024, 1, 1},
              {1, 0, 1024, 1024, 1},
              {0, 1, 1024, 1, 1024},
              {1, 1, 0, 65536, 65536}}; /* 0: the default */
    pc_rules_t *r = rules("deny 192.0.2.0/24\n");
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        kf_ebpf_config_t c = plain;
        c.rate = cs[i].rate;
        c.burst = cs[i].rate > 0 ? 10 : 0;
        c.block_sources = cs[i].block;
        c.source_entries = cs[i].entries;
        kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
        unsigned nb = 0, nk = 0;
        assert_int_equal(kf_ebpf_source_map_entries(k, &nb, &nk), 0);
        assert_int_equal(nb, cs[i].want_buckets);
        assert_int_equal(nk, cs[i].want_blocked);
        char why[200] = "";
        assert_int_equal(kf_ebpf_set_rules(k, NULL, r, why, sizeof why), 0);
        assert_int_equal(kf_ebpf_source_map_entries(k, &nb, &nk), 0);
        assert_int_equal(nb, cs[i].want_buckets);
        assert_int_equal(nk, cs[i].want_blocked);
        addr_t a = addr("198.51.100.1"), b = addr("198.51.100.2");
        if (cs[i].block) { /* two marks fit: the map is not the one-entry one */
            assert_int_equal(kf_ebpf_block_source(k, &a, 1), 0);
            assert_int_equal(kf_ebpf_block_source(k, &b, 1), 0);
            assert_false(syn(k, "198.51.100.2"));
        } else {
            assert_int_equal(kf_ebpf_block_source(k, &a, 1), PC_EINVAL);
            assert_true(syn(k, "198.51.100.1"));
        }
        assert_true(syn(k, "198.51.100.3"));
        assert_false(syn(k, "192.0.2.1"));
        kf_ebpf_close(k, -1);
    }
    kf_ebpf_config_t c = plain;
    c.block_sources = 1;
    c.source_entries = 2;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    addr_t a = addr("198.51.100.1"), b = addr("198.51.100.2"), d = addr("198.51.100.3");
    assert_int_equal(kf_ebpf_block_source(k, &a, 1), 0);
    assert_int_equal(kf_ebpf_block_source(k, &b, 1), 0);
    assert_int_equal(kf_ebpf_block_source(k, &d, 1), PC_ENOBUFS);
    assert_true(syn(k, "198.51.100.3"));
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

/* kf_ebpf_kernel_bytes is the kernel's account of the program and its maps
 * (fdinfo memlock): it grows with the rule maps when a larger set is swapped
 * in, and with the bucket map when a rate makes it full size, also after a
 * swap (the shared maps are counted through every object). The bound on the
 * bucket map is half its keys and values: Linux 6.4+ counts what it
 * allocated (more than that), 5.11-6.3 estimate it page-rounded (a page
 * less than keys and values, for the growth from one entry). */
static void kernel_bytes_follow_maps(void **state)
{
    uint64_t none = 0, rate = 0, big = 0;
    assert_int_equal(kf_ebpf_kernel_bytes(NULL, &none), PC_EINVAL);
    kf_ebpf_config_t c = plain;
    c.source_entries = 65536;
    kf_ebpf_t *k = open_or_skip(&c, NULL, -1);
    assert_int_equal(kf_ebpf_kernel_bytes(k, &none), 0);
    assert_true(none > 0);
    /* a set of 4096 /24s: the rule maps grow with it */
    size_t cap = 4096 * 32, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (unsigned i = 0; i < 4096; i++)
        len += (size_t)snprintf(text + len, cap - len, "deny 10.%u.%u.0/24\n", i >> 8, i & 255);
    pc_rules_t *r = rules(text);
    free(text);
    char why[200] = "";
    assert_int_equal(kf_ebpf_set_rules(k, NULL, r, why, sizeof why), 0);
    assert_int_equal(kf_ebpf_kernel_bytes(k, &big), 0);
    assert_true(big > none);
    kf_ebpf_close(k, -1);
    c.rate = 1;
    c.burst = 10;
    k = open_or_skip(&c, NULL, -1);
    assert_int_equal(kf_ebpf_kernel_bytes(k, &rate), 0);
    uint64_t half = 65536 * (uint64_t)(sizeof(struct kf_src) + sizeof(struct kf_bucket)) / 2;
    if (rate < none + half)
        fail_msg("with a rate %llu bytes, without %llu: the bucket map's entries are missing",
                 (unsigned long long)rate, (unsigned long long)none);
    assert_int_equal(kf_ebpf_set_rules(k, NULL, r, why, sizeof why), 0);
    uint64_t swapped = 0;
    assert_int_equal(kf_ebpf_kernel_bytes(k, &swapped), 0);
    if (swapped < big + half)
        fail_msg("after a swap, with a rate %llu bytes, without %llu: the shared bucket map is "
                 "missing",
                 (unsigned long long)swapped, (unsigned long long)big);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
}

static void bad_config(void **state)
{
    kf_ebpf_config_t c = plain;
    c.source_prefix_v4 = 33;
    kf_ebpf_t *k = (kf_ebpf_t *)&c;
    char why[100] = "";
    assert_int_equal(kf_ebpf_open(&c, NULL, -1, &k, why, sizeof why), PC_EINVAL);
    assert_null(k);
    assert_true(why[0] != 0);
    c = plain;
    c.rate = 10;
    c.burst = 0;
    assert_int_equal(kf_ebpf_open(&c, NULL, -1, &k, why, sizeof why), PC_EINVAL);
    kf_ebpf_close(NULL, -1);
}

/* Without privilege (root dropping to nobody: no capability left) the
 * kernel refuses bpf(): PC_EPERM with the hint, which the listener's tier
 * choice and its log rely on; not PC_ENOSYS (no eBPF here). Skipped where
 * the kernel lets unprivileged users load socket filters. */
static void unprivileged_refused(void **state)
{
    (void)state;
    FILE *f = fopen("/proc/sys/kernel/unprivileged_bpf_disabled", "r");
    int disabled = 0;
    if (f) {
        if (fscanf(f, "%d", &disabled) != 1) disabled = 0;
        fclose(f);
    }
    if (geteuid() != 0 || !disabled) skip();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
        kf_ebpf_t *k = NULL;
        char why[200] = "";
        int rc = kf_ebpf_open(&plain, NULL, -1, &k, why, sizeof why);
        if (rc != PC_EPERM) {
            fprintf(stderr, "kf_ebpf_open as nobody: %s (%s)\n", pc_err_name(rc), why);
            _exit(1);
        }
        _exit(k == NULL && strstr(why, "CAP_BPF") ? 0 : 3);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- a real listener ---------------------------------------------------------- */

/* Connect from src to dst:port (same family); 1 = connected, 0 = no answer
 * within ms (the SYN was dropped: no SYN-ACK, no reset). */
static int try_connect_to(const char *src, const char *dst, int port, int ms)
{
    int v6 = strchr(dst, ':') != NULL;
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(s >= 0);
    struct sockaddr_storage a, d;
    memset(&a, 0, sizeof a);
    memset(&d, 0, sizeof d);
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a, *d6 = (struct sockaddr_in6 *)&d;
        a6->sin6_family = d6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, src, &a6->sin6_addr), 1);
        assert_int_equal(inet_pton(AF_INET6, dst, &d6->sin6_addr), 1);
        d6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&a, *d4 = (struct sockaddr_in *)&d;
        a4->sin_family = d4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, src, &a4->sin_addr), 1);
        assert_int_equal(inet_pton(AF_INET, dst, &d4->sin_addr), 1);
        d4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    }
    assert_int_equal(bind(s, (struct sockaddr *)&a, len), 0);
    int rc = connect(s, (struct sockaddr *)&d, len);
    assert_true(rc == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = s, .events = POLLOUT};
    int n = poll(&p, 1, ms);
    int ok = 0;
    if (n == 1) {
        int e = -1;
        socklen_t l = sizeof e;
        assert_int_equal(getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &l), 0);
        if (e != 0) fail_msg("connect from %s: %s (a reset, not a silent drop)", src, strerror(e));
        ok = 1;
    }
    close(s);
    return ok;
}

static int try_connect(const char *src, int port, int ms)
{
    return try_connect_to(src, "127.0.0.1", port, ms);
}

static void real_listener(void **state)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 64), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int port = ntohs(a.sin_port);
    pc_rules_t *r = rules("deny 127.0.0.2/32\nallow 127.0.0.0/8\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, l);
    assert_int_equal(try_connect("127.0.0.1", port, 5000), 1);
    assert_int_equal(try_connect("127.0.0.2", port, 1500), 0);
    assert_int_equal(try_connect("127.0.0.3", port, 5000), 1);
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_true(st.dropped_rules >= 1); /* the client may have retransmitted */
    assert_true(st.syn_seen >= 3);
    kf_ebpf_close(k, l);
    assert_int_equal(try_connect("127.0.0.2", port, 5000), 1); /* detached */
    close(l);
    pc_rules_free(r);
}

/* The bucket and a blocked source on a real listener: SYNs over the burst
 * and from a marked source get no SYN-ACK. */
static void real_listener_rate_and_block(void **state)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 64), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int port = ntohs(a.sin_port);
    kf_ebpf_config_t c = plain;
    c.rate = 0.1; /* one SYN per 10 s after the burst: no refill during the test */
    c.burst = 3;
    c.block_sources = 1;
    kf_ebpf_t *k = open_or_skip(&c, NULL, l);
    for (int i = 0; i < 3; i++)
        assert_int_equal(try_connect("127.0.0.4", port, 5000), 1);
    assert_int_equal(try_connect("127.0.0.4", port, 1500), 0); /* over the burst */
    assert_int_equal(try_connect("127.0.0.1", port, 5000), 1); /* another source */
    addr_t b = addr("127.0.0.5");
    assert_int_equal(kf_ebpf_block_source(k, &b, 1), 0);
    assert_int_equal(try_connect("127.0.0.5", port, 1500), 0);
    assert_int_equal(kf_ebpf_block_source(k, &b, 0), 0);
    assert_int_equal(try_connect("127.0.0.5", port, 5000), 1);
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    assert_true(st.dropped_rate >= 1);
    assert_true(st.dropped_max >= 1);
    kf_ebpf_close(k, l);
    close(l);
}

/* A dual-stack IPv6 listener: IPv4 SYNs reach it as IPv4 packets (rules by
 * the packet's version, not the socket's family), IPv6 SYNs as IPv6; and a
 * rule swap on the live socket. Skips if the machine has no ::1. */
static void real_listener_v6(void **state)
{
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(l >= 0);
    int off = 0;
    assert_int_equal(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off), 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr); /* reachable as 127.0.0.1 only */
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 64), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int port = ntohs(a.sin6_port);
    pc_rules_t *r = rules("deny 127.0.0.3/32\n");
    kf_ebpf_t *k = open_or_skip(&plain, r, l);
    assert_int_equal(try_connect("127.0.0.1", port, 5000), 1);
    assert_int_equal(try_connect("127.0.0.3", port, 1500), 0);
    kf_ebpf_close(k, l);
    close(l);
    pc_rules_free(r);

    l = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(l >= 0);
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0) {
        close(l);
        printf("skipped: no ::1 here\n");
        return;
    }
    assert_int_equal(listen(l, 64), 0);
    al = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    port = ntohs(a.sin6_port);
    r = rules("deny ::1/128\n");
    pc_rules_t *none = rules("allow ::/0\n");
    k = open_or_skip(&plain, r, l);
    assert_int_equal(try_connect_to("::1", "::1", port, 1500), 0);
    char why[200] = "";
    assert_int_equal(kf_ebpf_set_rules(k, r, none, why, sizeof why), 0);
    assert_int_equal(try_connect_to("::1", "::1", port, 5000), 1);
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r, 0, &info), 0);
    assert_true(info.hits >= 1); /* the dropped SYN (and any retransmission) */
    kf_ebpf_close(k, l);
    close(l);
    pc_rules_free(r);
    pc_rules_free(none);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_config),
        cmocka_unit_test(unprivileged_refused),
        cmocka_unit_test(edges_and_exceptions),
        cmocka_unit_test(ends_carrying_into_high_half),
        cmocka_unit_test(mapped_space_boundary),
        cmocka_unit_test(rules_match_reference_shapes),
        cmocka_unit_test(rules_match_reference),
        cmocka_unit_test(non_syn_passes),
        cmocka_unit_test(ipv4_options),
        cmocka_unit_test(ipv4_malformed),
        cmocka_unit_test(rate_bucket),
        cmocka_unit_test(rate_bucket_prefix_zero),
        cmocka_unit_test(rate_bucket_race),
        cmocka_unit_test(rate_retransmit),
        cmocka_unit_test(blocked_sources),
        cmocka_unit_test(source_maps_sized_by_use),
        cmocka_unit_test(kernel_bytes_follow_maps),
        cmocka_unit_test(ipv6_header_reads),
        cmocka_unit_test(shadow_mode),
        cmocka_unit_test(swap_rules),
        cmocka_unit_test(real_listener),
        cmocka_unit_test(real_listener_v6),
        cmocka_unit_test(real_listener_rate_and_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif /* PC_HAVE_EBPF */
