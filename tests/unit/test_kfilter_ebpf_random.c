/* SPDX-License-Identifier: MIT */
/* The eBPF tier's packet parsing, differential and randomized: many packets
 * from a seeded PRNG (IPv4 and IPv6 TCP segments with every kind of flags,
 * IPv4 options and IHL values, IPv6 extension headers, fragments, other
 * protocols, truncations at every length, byte mutations, IPv4-mapped
 * sources, sources inside and outside a random rule set, blocked sources)
 * are run through the loaded program with BPF_PROG_TEST_RUN, and each
 * verdict, and each packet's effect on the program's counters, is compared
 * with a reference model written here from what docs/kernel-filter-ebpf.md
 * promises. The model's rule lookup is a plain longest-prefix scan over the
 * rules as generated, itself checked against pc_rules_match.
 *
 * A packet Linux would deliver to a TCP socket is also shown to the program
 * as that socket's filter sees it (the IP packet trimmed to its length; for
 * IPv6, skb->data past the extension headers, reproduced here by the length
 * the program infers it from), and to the classic-BPF tier's program
 * (src/filter/cbpf_compile.c, run by tests/unit/cbpf_run.h's interpreter):
 * both tiers must decide it as the model does.
 *
 * The seed is printed; PC_TEST_SEED=0x... repeats a run. Needs CAP_BPF:
 * without it the test prints "skipped: needs CAP_BPF" and skips. */
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
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include <bpf/bpf.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "filter/addr.h"
#include "filter/cbpf_compile.h"
#include "filter/rules.h"
#include "iocp/bpf/kfilter_shared.h"
#include "iocp/kfilter_ebpf.h"
#include "cbpf_run.h"
#include "bpf_caps.h"
#include "xorshift.h"

/* docs/kernel-filter-ebpf.md, "The program": the furthest the TCP header
 * may lie behind IPv6 extension headers. */
_Static_assert(KF_EXT6_MAX == 2048, "the documented bound");

#define SYN 0x02
#define ACK 0x10

#define ETH     14
#define PKT_MAX 3600 /* Ethernet + IP; BPF_PROG_TEST_RUN takes up to 3712 here */
#define EXT_MAX 2100 /* extension headers built, at most (past the program's 2048) */

static uint64_t g_seed, g_rng;
static uint64_t rnd(void)
{
    return xorshift64(&g_rng);
}
static unsigned rn(unsigned n) /* 0..n-1 */
{
    return (unsigned)(rnd() % n);
}

/* ---- rules and the reference lookup ------------------------------------------ */

#define MRULES_MAX 500

typedef struct mrule_s {
    addr_t a; /* masked */
    unsigned len;
    int deny;
} mrule_t;

static mrule_t g_rule[MRULES_MAX];
static size_t g_nrules;
static size_t g_index[MRULES_MAX]; /* pc_rules index of g_rule[i] (its line i + 1) */

static int bit(const uint8_t *b, unsigned i)
{
    return (b[i / 8] >> (7 - i % 8)) & 1;
}

static int same_prefix(const addr_t *p, const addr_t *a, unsigned len)
{
    if (p->family != a->family) return 0;
    for (unsigned i = 0; i < len; i++)
        if (bit(p->b, i) != bit(a->b, i)) return 0;
    return 1;
}

/* The source as the filter judges it: ::ffff:a.b.c.d is IPv4. */
static addr_t judged_source(const addr_t *a)
{
    addr_t r = *a;
    addr_normalize(&r);
    return r;
}

/* Longest matching rule for a judged source (IPv4 or IPv6), -1 for none:
 * a scan of every rule. */
static int model_lookup(const addr_t *a)
{
    int best = -1;
    for (size_t i = 0; i < g_nrules; i++)
        if (same_prefix(&g_rule[i].a, a, g_rule[i].len) &&
            (best < 0 || g_rule[i].len > g_rule[best].len))
            best = (int)i;
    return best;
}

/* The scan's answer against pc_rules_match's for the source as the socket
 * reports it (a mapped address as AF_INET6: user space takes it as IPv4). */
static void check_user_space(const pc_rules_t *r, const addr_t *src, int rule)
{
    struct sockaddr_storage ss;
    assert_true(addr_to_sockaddr(src, 0, (struct sockaddr *)&ss, sizeof ss) > 0);
    pc_rule_action_t act;
    size_t idx = SIZE_MAX;
    int m = pc_rules_match(r, (struct sockaddr *)&ss, &act, &idx);
    int ok = rule < 0 ? m == 0
                      : m == 1 && idx == g_index[rule] &&
                            act == (g_rule[rule].deny ? PC_RULE_DENY : PC_RULE_ALLOW);
    if (!ok) {
        char s[PC_ADDR_STRLEN];
        addr_format(src, s, sizeof s);
        fail_msg("seed %#llx: %s: pc_rules_match %d (rule %ld), the scan rule %d",
                 (unsigned long long)g_seed, s, m, m == 1 ? (long)idx : -1L, rule);
    }
}

/* An address in the parts of the space the rules crowd (10.0.0.0/14,
 * 2001:db8::/44 with a few low bits), sometimes anywhere. */
static addr_t rnd_addr(int family)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    a.family = (uint8_t)family;
    uint64_t x = rnd();
    if (family == 4) {
        uint32_t v = 0x0a000000u | (uint32_t)(x & 0x3ffff);
        if (x >> 61 == 0) v = (uint32_t)(x >> 20);
        a.b[0] = (uint8_t)(v >> 24), a.b[1] = (uint8_t)(v >> 16);
        a.b[2] = (uint8_t)(v >> 8), a.b[3] = (uint8_t)v;
    } else {
        uint64_t hi = 0x20010db800000000ull | (x & 0xfffff), lo = rnd() & 0xff000000000000ffull;
        if (x >> 61 == 0) hi = rnd(), lo = rnd();
        addr_store_be64(a.b, hi);
        addr_store_be64(a.b + 8, lo);
    }
    return a;
}

/* n random rules (fewer when a prefix repeats), as text for
 * pc_rules_load_string, one a line. Some sit around the IPv4-mapped space
 * (::/64, ::fffe:0:0/96, ::ffff:0:0/95: user space matches a mapped source
 * as IPv4, so they never apply to one). */
static char *rnd_rules(size_t n)
{
    static const char *near_mapped[] = {"::", "::fffe:0:0", "::fffe:0:0", "::"};
    static const unsigned near_len[] = {64, 96, 95, 0};
    size_t cap = n * 80 + 1, len = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    t[0] = 0;
    g_nrules = 0;
    for (size_t i = 0; i < n && g_nrules < MRULES_MAX; i++) {
        mrule_t r;
        memset(&r, 0, sizeof r);
        if (rn(40) == 0) {
            unsigned k = rn(4);
            const char *why;
            assert_int_equal(addr_parse(near_mapped[k], strlen(near_mapped[k]), &r.a, &why), 0);
            r.len = near_len[k];
        } else {
            int fam = rn(3) ? 4 : 6;
            r.a = rnd_addr(fam);
            unsigned bits = fam == 4 ? 32 : 128;
            switch (rn(8)) {
            case 0:
                r.len = rn(40) == 0 ? 0 : bits;
                break;
            case 1:
                r.len = bits;
                break;
            default:
                r.len = fam == 4 ? 12 + rn(21) : 32 + rn(97);
            }
        }
        addr_mask(&r.a, r.len);
        /* a mapped IPv6 prefix is refused (it would never match) */
        if (r.len >= 96 && addr_is_v4mapped(&r.a)) continue;
        int dup = 0;
        for (size_t j = 0; j < g_nrules && !dup; j++)
            dup = g_rule[j].len == r.len && memcmp(&g_rule[j].a, &r.a, sizeof r.a) == 0;
        if (dup) continue;
        r.deny = rn(3) != 0;
        char s[PC_ADDR_STRLEN];
        addr_format(&r.a, s, sizeof s);
        len +=
            (size_t)snprintf(t + len, cap - len, "%s %s/%u\n", r.deny ? "deny" : "allow", s, r.len);
        g_rule[g_nrules++] = r;
    }
    return t;
}

/* ---- sources ------------------------------------------------------------------ */

#define POOL_MAX 512

static addr_t g_pool4[POOL_MAX], g_pool6[POOL_MAX]; /* g_pool6 holds mapped ones too */
static size_t g_n4, g_n6;

static void pool_add(const addr_t *a)
{
    if (a->family == 4 && g_n4 < POOL_MAX) g_pool4[g_n4++] = *a;
    if (a->family == 6 && g_n6 < POOL_MAX) g_pool6[g_n6++] = *a;
}

static addr_t mapped_of(const addr_t *a4)
{
    addr_t m;
    memset(&m, 0, sizeof m);
    m.family = 6;
    m.b[10] = m.b[11] = 0xff;
    memcpy(m.b + 12, a4->b, 4);
    return m;
}

static addr_t add_one(addr_t a, int d)
{
    int nb = a.family == 4 ? 4 : 16;
    for (int j = nb - 1; j >= 0; j--) {
        uint8_t old = a.b[j];
        a.b[j] = (uint8_t)(a.b[j] + d);
        if (d > 0 ? a.b[j] > old : a.b[j] < old) break;
    }
    return a;
}

/* Sources for a round: each rule's first and last address and their
 * neighbours, a random one inside it, random ones, the edges of the spaces
 * and of the mapped /96, and the IPv4 ones again as mapped IPv6. */
static void pool_build(void)
{
    static const char *edges[] = {"0.0.0.0",
                                  "255.255.255.255",
                                  "::",
                                  "::1",
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                  "::ffff:0.0.0.0",
                                  "::ffff:255.255.255.255",
                                  "::fffe:ffff:ffff",
                                  "0:0:0:0:0:1::",
                                  "::ffff:10.0.0.1",
                                  "10.0.0.1"};
    g_n4 = g_n6 = 0;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        addr_t a;
        const char *why;
        assert_int_equal(addr_parse(edges[i], strlen(edges[i]), &a, &why), 0);
        pool_add(&a);
    }
    for (size_t i = 0; i < g_nrules && g_n4 + g_n6 < POOL_MAX - 40; i++) {
        const mrule_t *r = &g_rule[i];
        addr_t last = r->a, in = r->a;
        unsigned bits = r->a.family == 4 ? 32 : 128;
        for (unsigned b = r->len; b < bits; b++) {
            last.b[b / 8] |= (uint8_t)(0x80u >> (b % 8));
            if (rnd() & 1) in.b[b / 8] |= (uint8_t)(0x80u >> (b % 8));
        }
        addr_t set[5] = {r->a, add_one(r->a, -1), last, add_one(last, 1), in};
        for (int k = 0; k < 5; k++)
            pool_add(&set[k]);
    }
    for (int i = 0; i < 40; i++) {
        addr_t a4 = rnd_addr(4), a6 = rnd_addr(6);
        pool_add(&a4);
        pool_add(&a6);
    }
    size_t n4 = g_n4;
    for (size_t i = 0; i < n4; i += 2) {
        addr_t m = mapped_of(&g_pool4[i]);
        pool_add(&m);
    }
}

static addr_t pick_source(int family)
{
    if (rn(10) == 0) {
        addr_t a = rnd_addr(family);
        if (family == 6 && rn(4) == 0) a = mapped_of((addr_t[]){rnd_addr(4)});
        return a;
    }
    return family == 4 ? g_pool4[rn((unsigned)g_n4)] : g_pool6[rn((unsigned)g_n6)];
}

/* ---- packets ------------------------------------------------------------------- */

/* The TCP header (doff words, options random or NOPs) and payload at t;
 * returns its length. */
static size_t put_tcp(uint8_t *t, uint8_t flags, unsigned doff, size_t payload)
{
    uint16_t sport = (uint16_t)rnd(), dport = rn(4) ? 80 : (uint16_t)rnd();
    uint32_t seq = (uint32_t)rnd();
    t[0] = (uint8_t)(sport >> 8), t[1] = (uint8_t)sport;
    t[2] = (uint8_t)(dport >> 8), t[3] = (uint8_t)dport;
    t[4] = (uint8_t)(seq >> 24), t[5] = (uint8_t)(seq >> 16);
    t[6] = (uint8_t)(seq >> 8), t[7] = (uint8_t)seq;
    uint32_t ack = flags & ACK ? (uint32_t)rnd() : 0;
    t[8] = (uint8_t)(ack >> 24), t[9] = (uint8_t)(ack >> 16);
    t[10] = (uint8_t)(ack >> 8), t[11] = (uint8_t)ack;
    t[12] = (uint8_t)(doff << 4);
    t[13] = flags;
    t[14] = 0xfa, t[15] = 0xf0;
    t[16] = t[17] = t[18] = t[19] = 0;
    int nop = rn(2);
    for (size_t i = 20; i < doff * 4u; i++)
        t[i] = nop ? 1 : (uint8_t)rnd();
    for (size_t i = 0; i < payload; i++)
        t[doff * 4u + i] = (uint8_t)rnd();
    return doff * 4u + payload;
}

/* TCP flags: SYN weighted, SYN-ACK, ACK, RST, RST-ACK, FIN-ACK, PSH-ACK,
 * none, SYN with FIN, RST, ECE+CWR, PSH, URG or CWR; sometimes any byte. */
static uint8_t rnd_flags(void)
{
    static const uint8_t common[] = {SYN,        SYN,        SYN,        SYN,  SYN | ACK,
                                     ACK,        0x04,       0x14,       0x11, 0x18,
                                     SYN | 0x01, SYN | 0x04, SYN | 0xc0, 0x00, SYN | 0x08,
                                     SYN | 0x20, SYN | 0x80};
    return rn(8) ? common[rn(sizeof common)] : (uint8_t)rnd();
}

static unsigned rnd_doff(void)
{
    return rn(4) ? 5 : 5 + rn(11);
}

/* Payload bytes for a TCP header at off (from the IP header): room is left
 * for the longest TCP header and what mutate() adds. */
static size_t rnd_payload(size_t off)
{
    size_t p = rn(2) ? 0 : rn(20) ? rn(64) : rn(1200), room = PKT_MAX - ETH - off - 60 - 60;
    return p < room ? p : room;
}

/* Ethernet header (zero addresses) with the given type. */
static void put_eth(uint8_t *f, uint16_t type)
{
    memset(f, 0, 12);
    f[12] = (uint8_t)(type >> 8), f[13] = (uint8_t)type;
}

/* An IPv4 TCP packet (sometimes another protocol, a fragment, options). */
static size_t build_v4(uint8_t *f, const addr_t *src, uint8_t flags)
{
    put_eth(f, 0x0800);
    uint8_t *ip = f + ETH;
    unsigned ihl = rn(3) ? 5 : 5 + rn(11);
    memset(ip, 0, 20);
    ip[0] = (uint8_t)(0x40 | ihl);
    ip[1] = (uint8_t)rnd();
    ip[4] = (uint8_t)rnd(), ip[5] = (uint8_t)rnd();
    switch (rn(12)) {
    case 0: /* a later fragment */
        ip[6] = (uint8_t)((rn(2) ? 0x20 : 0) | rn(0x20)), ip[7] = (uint8_t)(1 + rn(255));
        break;
    case 1: /* the first fragment of several */
        ip[6] = 0x20;
        break;
    case 2:
    case 3:
        ip[6] = 0x40; /* DF */
        break;
    default:
        break;
    }
    ip[8] = 64;
    ip[9] = rn(10) ? 6 : (uint8_t[]){17, 1, 0, 47, 132, 255}[rn(6)];
    memcpy(ip + 12, src->b, 4);
    ip[16] = 127, ip[19] = 1;
    int eol = rn(3) == 0;
    for (unsigned i = 20; i < ihl * 4; i++)
        ip[i] = eol ? 0 : rn(2) ? 1 : (uint8_t)rnd();
    size_t n = ihl * 4 + put_tcp(ip + ihl * 4, flags, rnd_doff(), rnd_payload(ihl * 4));
    ip[2] = (uint8_t)(n >> 8), ip[3] = (uint8_t)n;
    return ETH + n;
}

/* An IPv6 TCP packet, sometimes behind extension headers (hop-by-hop first,
 * destination options, routing, a fragment header), sometimes another next
 * header; marked IPv6 (Ethernet type) or, rarely, IPv4. */
static size_t build_v6(uint8_t *f, const addr_t *src, uint8_t flags)
{
    put_eth(f, rn(20) ? 0x86dd : 0x0800);
    uint8_t *ip = f + ETH;
    memset(ip, 0, 40);
    uint32_t fl = (uint32_t)rnd() & 0x0fffffff;
    ip[0] = (uint8_t)(0x60 | fl >> 24), ip[1] = (uint8_t)(fl >> 16);
    ip[2] = (uint8_t)(fl >> 8), ip[3] = (uint8_t)fl;
    ip[7] = 64;
    memcpy(ip + 8, src->b, 16);
    ip[39] = 1;
    size_t off = 40;
    uint8_t *nh = ip + 6;
    unsigned next = rn(3) ? 0 : 1 + rn(3);
    if (rn(60) == 0) next = 1; /* one long header: near or past KF_EXT6_MAX */
    for (unsigned i = 0; i < next; i++) {
        static const uint8_t kinds[] = {0, 60, 60, 43, 44};
        uint8_t kind = kinds[rn(sizeof kinds)];
        if (kind == 0 && i > 0) kind = 60;
        size_t sz = kind == 44 ? 8 : 8 * (1 + (rn(4) ? rn(3) : rn(256)));
        if (next == 1 && rn(60) == 0) sz = 8 * (1 + 250 + rn(6));
        if (off + sz > 40 + EXT_MAX) sz = 8;
        *nh = kind;
        nh = ip + off;
        memset(ip + off, 0, sz); /* Pad1 options */
        if (kind != 44) ip[off + 1] = (uint8_t)(sz / 8 - 1);
        if (kind == 43) ip[off + 2] = (uint8_t)rn(5); /* routing type, 0 segments left */
        if (kind == 44 && rn(3) == 0) ip[off + 2] = (uint8_t)(1 + rn(255)); /* offset */
        off += sz;
    }
    *nh = rn(12) ? 6 : (uint8_t[]){17, 58, 59, 132}[rn(4)];
    size_t n = off + put_tcp(ip + off, flags, rnd_doff(), rnd_payload(off));
    ip[4] = (uint8_t)((n - 40) >> 8), ip[5] = (uint8_t)(n - 40);
    return ETH + n;
}

/* Anything else: another Ethernet type or IP version, random bytes. */
static size_t build_junk(uint8_t *f)
{
    static const uint16_t types[] = {0x0806, 0x8100, 0x88cc, 0x0800, 0x86dd, 0x0042};
    put_eth(f, rn(4) ? types[rn(sizeof types / sizeof types[0])] : (uint16_t)rnd());
    size_t n = ETH + rn(120);
    for (size_t i = ETH; i < n; i++)
        f[i] = (uint8_t)rnd();
    if (n > ETH && rn(2)) f[ETH] = (uint8_t)(rn(16) << 4 | (f[ETH] & 15));
    return n;
}

/* Change a built packet: truncate it, flip bytes of its headers, set its
 * IHL, version, IPv6 payload length, protocol or Ethernet type, add bytes. */
static size_t mutate(uint8_t *f, size_t n)
{
    uint8_t *ip = f + ETH;
    size_t len = n - ETH;
    switch (rn(20)) {
    case 0:
    case 1:
    case 2:
        return ETH + rn((unsigned)len + 1);
    case 3:
    case 4:
        for (unsigned k = 1 + rn(4); k > 0 && len; k--)
            ip[rn(len < 80 ? (unsigned)len : 80)] = (uint8_t)rnd();
        return n;
    case 5:
    case 6:
        if (len) ip[0] = (uint8_t)((ip[0] & 0xf0) | rn(16)); /* IHL, any */
        return n;
    case 7:
        if (len) ip[0] = (uint8_t)(rn(16) << 4 | (ip[0] & 15));
        return n;
    case 8:
    case 9:
        if (len >= 6) { /* the IPv6 payload length: anything, or a little off */
            unsigned pl = (unsigned)ip[4] << 8 | ip[5];
            pl = rn(2) ? (unsigned)rnd() : pl + (unsigned)(int)(rn(97) - 48);
            ip[4] = (uint8_t)(pl >> 8), ip[5] = (uint8_t)pl;
        }
        return n;
    case 10:
        if (len >= 10) ip[(ip[0] >> 4) == 6 ? 6 : 9] = (uint8_t)rnd();
        return n;
    case 11:
        f[12] = f[12] == 0x86 ? 0x08 : 0x86, f[13] = f[12] == 0x86 ? 0xdd : 0x00;
        return n;
    case 12: {
        size_t add = rn(60);
        if (n + add > PKT_MAX) add = PKT_MAX - n;
        for (size_t i = 0; i < add; i++)
            f[n + i] = (uint8_t)rnd();
        return n + add;
    }
    default:
        return n;
    }
}

/* ---- the model -------------------------------------------------------------------- */

/* Where the program must read a TCP header in a packet as BPF_PROG_TEST_RUN
 * or a socket shows it: ip (len bytes, from the network header), marked =
 * the kernel marked it IPv6 (skb->protocol). Returns the TCP header's
 * offset, or -1 when the program must not judge the packet (it passes:
 * docs/kernel-filter-ebpf.md, "The program", and what this test
 * establishes, "Malformed packets"); *v6 the IP version judged, *why what
 * decided. */
static long model_tcp(const uint8_t *ip, size_t len, int marked, int *v6, const char **why)
{
    if (marked) {
        /* 54 bytes read: the fixed header and TCP up to its flags; the
         * kernel marks IPv6 only what says version 6 */
        if (len < 54) return *why = "IPv6 shorter than 54 bytes", -1;
        if (ip[0] >> 4 != 6) return *why = "marked IPv6, not version 6", -1;
        *v6 = 1;
        /* On a TCP socket the kernel has trimmed the packet to its payload
         * length and skb->data is at TCP: what the length says lies beyond
         * skb->len is the fixed header and extension headers in front.
         * Under the test run nothing is in front and TCP follows the fixed
         * header. */
        size_t claimed = 40 + ((size_t)ip[4] << 8 | ip[5]);
        size_t front = claimed > len ? claimed - len : 0;
        if (front == 0 || front == 40) {
            if (ip[6] != 6) return *why = "IPv6, next header not TCP", -1;
            return *why = "IPv6", 40;
        }
        /* extension headers are multiples of 8 bytes, at most 2048 read */
        if (front > 2048) return *why = "IPv6, more than 2048 bytes in front of TCP", -1;
        if (front < 48 || front % 8) return *why = "IPv6, length gap not extension headers", -1;
        if (front + 14 > len) return *why = "IPv6, TCP header past the end", -1;
        return *why = "IPv6 behind extension headers", (long)front;
    }
    if (len < 34) return *why = "shorter than IPv4 + TCP flags", -1;
    if (ip[0] >> 4 == 6) { /* not marked so: TCP right after the fixed header */
        *v6 = 1;
        if (len < 54) return *why = "unmarked IPv6 shorter than 54 bytes", -1;
        if (ip[6] != 6) return *why = "unmarked IPv6, next header not TCP", -1;
        return *why = "unmarked IPv6", 40;
    }
    if (ip[0] >> 4 != 4) return *why = "IP version neither 4 nor 6", -1;
    *v6 = 0;
    size_t ihl = (size_t)(ip[0] & 15) * 4;
    if (ihl < 20) return *why = "IPv4 IHL below 5", -1;
    if (ihl + 14 > len) return *why = "IPv4, TCP flags past the end", -1;
    if (ip[9] != 6) return *why = "IPv4, not TCP", -1;
    if ((ip[6] & 0x1f) || ip[7]) return *why = "IPv4 fragment past the first", -1;
    return *why = "IPv4", (long)ihl;
}

/* The round's configuration, as the model sees it. */
typedef struct mcfg_s {
    int blocks, shadow;
    unsigned p4, p6;    /* source prefixes */
    addr_t blocked[32]; /* masked */
    size_t nblocked;
} mcfg_t;

/* What a packet should do to the program's counters. */
typedef struct mcount_s {
    uint64_t syn, rules, max, would;
    uint64_t *per_rule; /* by g_rule index */
} mcount_t;

static addr_t source_key(const mcfg_t *c, const addr_t *judged)
{
    addr_t k = *judged;
    addr_mask(&k, k.family == 4 ? c->p4 : c->p6);
    return k;
}

enum { V_PASS = 1, V_DROP = 0 };

typedef struct verdict_s {
    int pass;
    int judged;        /* a SYN the program judged (counted in syn_seen) */
    long tcp;          /* where the TCP header was taken to be */
    int rule;          /* the scan's rule for the source, -1 none */
    int denied;        /* by the rules alone */
    addr_t src;        /* the source as in the packet */
    const char *where; /* the packet as the model located TCP in it, when it did */
    const char *why;
} verdict_t;

/* The model's verdict on a packet, and the counters it moves. r: the rule
 * set, for pc_rules_match. */
static verdict_t model(const mcfg_t *c, const pc_rules_t *r, const uint8_t *ip, size_t len,
                       int marked, mcount_t *cnt)
{
    verdict_t v;
    memset(&v, 0, sizeof v);
    v.pass = V_PASS;
    v.rule = -1;
    int v6 = 0;
    long t = model_tcp(ip, len, marked, &v6, &v.why);
    v.tcp = t;
    if (t < 0) return v;
    v.where = v.why;
    /* TCP flags: only a SYN without ACK is judged */
    if ((ip[t + 13] & (SYN | ACK)) != SYN) return v.why = "not a SYN", v;
    v.judged = 1;
    memset(&v.src, 0, sizeof v.src);
    v.src.family = v6 ? 6 : 4;
    memcpy(v.src.b, ip + (v6 ? 8 : 12), v6 ? 16 : 4);
    addr_t js = judged_source(&v.src);
    v.rule = model_lookup(&js);
    check_user_space(r, &v.src, v.rule);
    v.denied = v.rule >= 0 && g_rule[v.rule].deny;
    cnt->syn++;
    int blocked = 0;
    if (c->blocks) {
        addr_t k = source_key(c, &js);
        for (size_t i = 0; i < c->nblocked && !blocked; i++)
            blocked = memcmp(&c->blocked[i], &k, sizeof k) == 0;
    }
    if (blocked) {
        v.why = "blocked source";
        if (c->shadow) return cnt->would++, v;
        cnt->max++;
        v.pass = V_DROP;
        return v;
    }
    if (v.denied) {
        v.why = "denied by a rule";
        if (c->shadow) return cnt->would++, v;
        cnt->rules++;
        cnt->per_rule[v.rule]++;
        v.pass = V_DROP;
        return v;
    }
    v.why = "a SYN allowed";
    return v;
}

/* ---- what Linux delivers to a TCP socket ----------------------------------------------- */

/* Would Linux hand this packet to a TCP socket (headers well formed, not a
 * fragment, TCP reached)? Then *iplen: the IP packet's length (the kernel
 * trims the rest), *tcp: the TCP header's offset (where skb->data is).
 * Checksums and addresses are not modelled. */
static int kernel_delivers(const uint8_t *ip, size_t len, int marked, size_t *iplen, size_t *tcp)
{
    if (len < 20) return 0;
    size_t end, off;
    if (!marked) {
        if (ip[0] >> 4 != 4) return 0;
        off = (size_t)(ip[0] & 15) * 4;
        end = (size_t)ip[2] << 8 | ip[3];
        if (off < 20 || end < off || end > len) return 0;
        if ((ip[6] & 0x3f) || ip[7] || ip[9] != 6) return 0; /* fragments are reassembled first */
    } else {
        if (len < 40 || ip[0] >> 4 != 6) return 0;
        end = 40 + ((size_t)ip[4] << 8 | ip[5]);
        if (end == 40 || end > len) return 0; /* (a jumbogram: not built here) */
        off = 40;
        uint8_t nh = ip[6];
        for (int i = 0; nh != 6; i++) {
            if (nh == 44) return 0; /* reassembled first */
            if (nh != 60 && nh != 43 && !(nh == 0 && i == 0)) return 0;
            if (off + 8 > end) return 0;
            size_t sz = ((size_t)ip[off + 1] + 1) * 8;
            if (off + sz > end || (nh == 43 && ip[off + 3])) return 0;
            nh = ip[off];
            off += sz;
        }
    }
    if (end - off < 20) return 0;
    size_t doff = (size_t)(ip[off + 12] >> 4) * 4;
    if (doff < 20 || doff > end - off) return 0;
    *iplen = end;
    *tcp = off;
    return 1;
}

/* How often each of the model's conclusions came up (the test's coverage). */
static struct {
    const char *where, *why;
    uint64_t n, drops;
} g_why[48];

static void why_count(const char *where, const char *why, int dropped)
{
    for (size_t i = 0; i < sizeof g_why / sizeof g_why[0]; i++) {
        if (g_why[i].why && (g_why[i].why != why || g_why[i].where != where)) continue;
        g_why[i].where = where;
        g_why[i].why = why;
        g_why[i].n++;
        g_why[i].drops += (uint64_t)dropped;
        return;
    }
}

/* ---- the run ------------------------------------------------------------------------ */

typedef struct round_s {
    kf_ebpf_t *k;
    int fd;
    const pc_rules_t *r;
    const mcfg_t *c;
    mcount_t cnt;
    kf_ebpf_stats_t st; /* the program's counters after the last packet */
    cbpf_prog_t cb[3];  /* classic: IPv4, IPv6, IPv6 dual-stack listeners */
    int cb_ok[3];
    int round;
    uint64_t packets, judged, dropped, socket_views, classic_runs, refused;
} round_t;

static void dump(const uint8_t *f, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 96 && o + 4 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x%s", f[i], i == 13 ? " | " : "");
    if (n > 96 && o + 4 < cap) snprintf(out + o, cap - o, "...");
}

#define PFAIL(rd, f, n, ...)                                                                 \
    do {                                                                                     \
        char hex_[400];                                                                      \
        dump(f, n, hex_, sizeof hex_);                                                       \
        char msg_[300];                                                                      \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                            \
        fail_msg("seed %#llx (PC_TEST_SEED repeats it), round %d, packet %llu (%lu "         \
                 "bytes): %s\n  %s",                                                         \
                 (unsigned long long)g_seed, (rd)->round, (unsigned long long)(rd)->packets, \
                 (unsigned long)(n), msg_, hex_);                                            \
    } while (0)

/* One packet (f: Ethernet + IP, n bytes) through the program, against the
 * model: verdict, return value (0 or the whole packet), counters. */
static void run_one(round_t *rd, uint8_t *f, size_t n, const char *view)
{
    rd->packets++;
    int marked = f[12] == 0x86 && f[13] == 0xdd;
    verdict_t v = model(rd->c, rd->r, f + ETH, n - ETH, marked, &rd->cnt);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = f, .data_size_in = (uint32_t)n, .repeat = 1);
    if (bpf_prog_test_run_opts(rd->fd, &o)) {
        /* the test run itself refuses an IPv4 packet shorter than 20 bytes
         * and an IPv6 one shorter than 40 (Ethernet type; the kernel's IP
         * receive paths drop those before any socket, and the program would
         * pass them: too short for a TCP header) */
        int ip4 = f[12] == 0x08 && f[13] == 0x00;
        if (errno == EINVAL && ((ip4 && n - ETH < 20) || (marked && n - ETH < 40)) && v.pass &&
            !v.judged) {
            rd->refused++;
            return;
        }
        PFAIL(rd, f, n, "BPF_PROG_TEST_RUN: %s", strerror(errno));
    }
    /* pass: keep the whole packet (skb->len; 0 for an empty one, which is
     * dropped either way), drop: 0 */
    int got = o.retval != 0;
    if (o.retval != (v.pass ? n - ETH : 0))
        PFAIL(rd, f, n, "%s: the program returns %u, the model %s (%s): %lu", view, o.retval,
              v.pass ? "passes" : "drops", v.why, v.pass ? (unsigned long)(n - ETH) : 0ul);
    why_count(v.where, v.why, !got && n > ETH);
    kf_ebpf_stats_t st;
    kf_ebpf_stats(rd->k, &st);
    uint64_t dsyn = st.syn_seen - rd->st.syn_seen;
    if (dsyn != (uint64_t)v.judged)
        PFAIL(rd, f, n, "%s: syn_seen +%llu, the model %s (%s)", view, (unsigned long long)dsyn,
              v.judged ? "judged it a SYN" : "did not judge it", v.why);
    if (st.dropped_rules != rd->cnt.rules || st.dropped_max != rd->cnt.max ||
        st.would_drop != rd->cnt.would || st.dropped_rate != 0)
        PFAIL(rd, f, n,
              "%s: counters rules %llu max %llu would %llu rate %llu, the model %llu %llu %llu 0",
              view, (unsigned long long)st.dropped_rules, (unsigned long long)st.dropped_max,
              (unsigned long long)st.would_drop, (unsigned long long)st.dropped_rate,
              (unsigned long long)rd->cnt.rules, (unsigned long long)rd->cnt.max,
              (unsigned long long)rd->cnt.would);
    rd->st = st;
    rd->judged += (uint64_t)v.judged;
    rd->dropped += (uint64_t)!got;
}

/* A packet Linux would deliver to a TCP socket, as that socket's filters see
 * it: the eBPF program (the packet trimmed to its IP length; IPv6 with the
 * payload length grown by the bytes in front of TCP, which is how the
 * program finds skb->data there) and the classic program (TCP at skb->data,
 * the IP header at the network offset). */
static void run_socket_view(round_t *rd, const uint8_t *f, size_t n)
{
    int marked = f[12] == 0x86 && f[13] == 0xdd;
    size_t iplen, tcp;
    if (!kernel_delivers(f + ETH, n - ETH, marked, &iplen, &tcp)) return;
    rd->socket_views++;
    static uint8_t s[PKT_MAX];
    memcpy(s, f, ETH + iplen);
    if (marked) {
        size_t pl = iplen - 40 + tcp;
        if (pl > 0xffff) return;
        s[ETH + 4] = (uint8_t)(pl >> 8), s[ETH + 5] = (uint8_t)pl;
    }
    run_one(rd, s, ETH + iplen, "as a TCP socket's filter");

    /* where the program reads TCP in that view: where the kernel put it,
     * unless more than 2048 bytes of extension headers are in front (it
     * passes those, documented) */
    const uint8_t *ip = f + ETH;
    mcount_t scratch = {0};
    uint64_t *pr = calloc(g_nrules + 1, sizeof *pr);
    assert_non_null(pr);
    scratch.per_rule = pr;
    mcfg_t plain = {.p4 = 32, .p6 = 128};
    verdict_t v = model(&plain, rd->r, s + ETH, iplen, marked, &scratch);
    free(pr);
    if (v.tcp >= 0 ? (size_t)v.tcp != tcp : tcp <= 2048)
        PFAIL(rd, f, n, "the model reads TCP at %ld in the socket view, the kernel's is at %lu",
              v.tcp, (unsigned long)tcp);

    /* the classic tier: the flags at skb->data, the source at the network
     * offset, whatever lies between; it judges a mapped IPv6 source by the
     * IPv6 ranges (Linux drops those SYNs anyway, cbpf_compile.h): left out */
    addr_t src;
    memset(&src, 0, sizeof src);
    src.family = marked ? 6 : 4;
    memcpy(src.b, ip + (marked ? 8 : 12), marked ? 16 : 4);
    if (addr_is_v4mapped(&src)) return;
    int rule = model_lookup(&src);
    int judged = (ip[tcp + 13] & (SYN | ACK)) == SYN;
    int want = !(judged && rule >= 0 && g_rule[rule].deny);
    cbpf_pkt_t p;
    memset(&p, 0, sizeof p);
    memcpy(p.tcp, ip + tcp, 20);
    p.netlen = tcp < sizeof p.net ? tcp : sizeof p.net;
    memcpy(p.net, ip, p.netlen);
    for (int i = 0; i < 3; i++) {
        int fam = i == 0 ? 4 : 6, dual = i == 2;
        if (!rd->cb_ok[i]) continue;
        if ((marked && fam == 4) || (!marked && fam == 6 && !dual)) continue;
        uint32_t ret = 0;
        size_t steps, at;
        int rc = cbpf_run(&rd->cb[i], &p, &ret, &steps, &at);
        if (rc != CBPF_RUN_OK)
            PFAIL(rd, f, n, "classic program %d: %d at %lu", i, rc, (unsigned long)at);
        rd->classic_runs++;
        if ((ret != 0) != want)
            PFAIL(rd, f, n, "the classic program (IPv%d%s listener) %s, the model %s", fam,
                  dual ? " dual-stack" : "", ret ? "passes" : "drops", want ? "passes" : "drops");
    }
}

static void run_packet(round_t *rd, uint8_t *f, size_t n)
{
    run_one(rd, f, n, "under the test run");
    run_socket_view(rd, f, n);
}

/* A valid SYN cut at every length from the Ethernet header up. */
static void every_length(round_t *rd, int v6)
{
    static uint8_t f[PKT_MAX];
    addr_t src = pick_source(v6 ? 6 : 4);
    size_t n = v6 ? build_v6(f, &src, SYN) : build_v4(f, &src, SYN);
    for (size_t l = ETH; l <= n; l++)
        run_one(rd, f, l, "cut short");
}

static uint64_t seed_from_env(void)
{
    const char *s = getenv("PC_TEST_SEED");
    if (s && *s) return strtoull(s, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    return x ? x : 1;
}

static void packets_against_model(void **state)
{
    (void)state;
    g_seed = seed_from_env();
    g_rng = g_seed;
    printf("seed %#llx (PC_TEST_SEED=%#llx repeats this run)\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t total = 0, judged = 0, dropped = 0, views = 0, classic = 0, refused = 0;
    static const size_t sizes[] = {0, 1, 8, 60, 300};
    for (int round = 0; round < 12; round++) {
        size_t nr = sizes[round % 5];
        char *text = rnd_rules(nr);
        pc_rules_t *r = NULL;
        char err[200];
        if (pc_rules_load_string(text, strlen(text), NULL, &r, err, sizeof err))
            fail_msg("seed %#llx: rules: %s\n%s", (unsigned long long)g_seed, err, text);
        for (size_t i = 0; i < g_nrules; i++) {
            g_index[i] = SIZE_MAX;
            for (size_t j = 0; j < pc_rules_count(r); j++) {
                pc_rule_info_t info;
                assert_int_equal(pc_rules_get(r, j, &info), 0);
                if (info.line == i + 1) g_index[i] = j;
            }
            assert_true(g_index[i] != SIZE_MAX);
        }
        pool_build();

        mcfg_t c;
        memset(&c, 0, sizeof c);
        kf_ebpf_config_t kc = {
            .source_prefix_v4 = 32, .source_prefix_v6 = 128, .source_entries = 1024};
        c.p4 = 32, c.p6 = 128;
        switch (round % 4) {
        case 1: /* blocked sources, masked to random source prefixes */
        case 3:
            c.blocks = 1;
            c.p4 = 8 + rn(25), c.p6 = 32 + rn(97);
            kc.block_sources = 1;
            kc.source_prefix_v4 = (uint8_t)c.p4, kc.source_prefix_v6 = (uint8_t)c.p6;
            c.shadow = kc.shadow = round % 4 == 3;
            break;
        case 2: /* a bucket that never runs out: the rate path, no drops */
            kc.rate = 1e9, kc.burst = 1000000;
            break;
        default:
            break;
        }
        kf_ebpf_t *k = NULL;
        char why[200] = "";
        int rc = kf_ebpf_open(&kc, r, -1, &k, why, sizeof why);
        if (rc == PC_EPERM && !bpf_caps_held()) {
            printf("skipped: needs CAP_BPF (%s)\n", why);
            pc_rules_free(r);
            free(text);
            skip();
        }
        if (rc) fail_msg("kf_ebpf_open: %s (%s)", pc_err_name(rc), why);
        if (c.blocks) {
            size_t nb = 1 + rn(20);
            for (size_t i = 0; i < nb; i++) {
                addr_t a = pick_source(rn(2) ? 4 : 6);
                assert_int_equal(kf_ebpf_block_source(k, &a, 1), 0);
                addr_t key = source_key(&c, (addr_t[]){judged_source(&a)});
                int have = 0;
                for (size_t j = 0; j < c.nblocked; j++)
                    have |= memcmp(&c.blocked[j], &key, sizeof key) == 0;
                if (!have) c.blocked[c.nblocked++] = key;
            }
        }
        round_t rd;
        memset(&rd, 0, sizeof rd);
        rd.k = k, rd.fd = kf_ebpf_prog_fd(k), rd.r = r, rd.c = &c, rd.round = round;
        rd.cnt.per_rule = calloc(g_nrules + 1, sizeof *rd.cnt.per_rule);
        assert_non_null(rd.cnt.per_rule);
        for (int i = 0; i < 3; i++) {
            rd.cb_ok[i] = cbpf_compile(r, i == 0 ? 4 : 6, i == 2, &rd.cb[i]) == 0;
        }

        static uint8_t f[PKT_MAX];
        for (int i = 0; i < 4000; i++) {
            size_t n;
            unsigned kind = rn(100);
            if (kind < 45) {
                addr_t a = pick_source(4);
                n = build_v4(f, &a, rnd_flags());
            } else if (kind < 92) {
                addr_t a = pick_source(6);
                n = build_v6(f, &a, rnd_flags());
            } else {
                n = build_junk(f);
            }
            if (rn(5) < 3) n = mutate(f, n);
            if (rn(4) == 0) n = mutate(f, n);
            run_packet(&rd, f, n);
        }
        for (int i = 0; i < 6; i++)
            every_length(&rd, i % 2);

        /* per-rule drops, collected into the set's hit counters */
        kf_ebpf_collect_hits(k, r);
        for (size_t i = 0; i < g_nrules; i++) {
            pc_rule_info_t info;
            assert_int_equal(pc_rules_get(r, g_index[i], &info), 0);
            if (info.hits != rd.cnt.per_rule[i])
                fail_msg("seed %#llx, round %d: rule %s: %llu hits, the model %llu",
                         (unsigned long long)g_seed, round, info.text,
                         (unsigned long long)info.hits, (unsigned long long)rd.cnt.per_rule[i]);
        }
        total += rd.packets, judged += rd.judged, dropped += rd.dropped;
        views += rd.socket_views, classic += rd.classic_runs, refused += rd.refused;
        for (int i = 0; i < 3; i++)
            cbpf_prog_free(&rd.cb[i]);
        free(rd.cnt.per_rule);
        kf_ebpf_close(k, -1);
        pc_rules_free(r);
        free(text);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%llu packets (%llu judged SYNs, %llu dropped, %llu refused by the test run), %llu "
           "socket views, %llu classic runs in %.2f s\n",
           (unsigned long long)total, (unsigned long long)judged, (unsigned long long)dropped,
           (unsigned long long)refused, (unsigned long long)views, (unsigned long long)classic, s);
    for (size_t i = 0; i < sizeof g_why / sizeof g_why[0] && g_why[i].why; i++)
        printf("  %7llu %s%s%s (%llu dropped)\n", (unsigned long long)g_why[i].n,
               g_why[i].where ? g_why[i].where : "", g_why[i].where ? ": " : "", g_why[i].why,
               (unsigned long long)g_why[i].drops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packets_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif /* PC_HAVE_EBPF */
