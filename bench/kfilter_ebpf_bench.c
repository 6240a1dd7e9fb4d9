/* SPDX-License-Identifier: MIT */
/* pc-kfilter-ebpf-bench: what the eBPF kernel filter costs per SYN and how
 * long a rule set takes to load, for the library's layout (flat sorted
 * ranges in array maps, src/iocp/bpf/kfilter.bpf.c) against the kernel's
 * LPM trie (bench/kfilter_lpm.bpf.c), side by side in one run.
 *
 *   pc-kfilter-ebpf-bench [--v4 1000000] [--v6 100000] [--probes 4096]
 *                         [--repeat 200] [--seed S] [--v4-hosts]
 *
 * Rule sets are random deny lists with a BGP-like prefix-length mix (as
 * pc-filter-bench; --v4-hosts: all IPv4 prefixes /32). Each program runs on crafted Ethernet + IP +
 * TCP SYNs through BPF_PROG_TEST_RUN: "hot" is the kernel's mean over --repeat runs of the same
 * packet (caches warm), "single" one run per packet (the kernel's timer around one run included, so
 * it is an upper bound), both averaged over --probes packets (half inside a prefix, half anywhere).
 * Also: a small set, no rules, a non-SYN packet of each family (what an accepted socket
 * pays: the ack and ack_v6 lines), and a SYN of a new attempt with a per-source rate on and off.
 * Needs CAP_BPF; without it prints "skipped" and exits 0. It measures; it never fails on a time
 * (only on a verdict mismatch).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "core/clock.h"
#include "filter/addr.h"
#include "filter/rules.h"
#include "iocp/kfilter_ebpf.h"
#include "iocp/bpf/kfilter_shared.h"

extern const unsigned char pc_kfilter_lpm_obj[];
extern const size_t pc_kfilter_lpm_obj_len;

static uint64_t rng = 1;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t top(unsigned len)
{
    return len == 0 ? 0 : len >= 64 ? ~0ull : ~0ull << (64 - len);
}

typedef struct gen_s {
    uint64_t hi; /* IPv4: address << 32; IPv6: top 64 bits */
    uint8_t len;
    uint8_t family;
} gen_t;

static int gen_cmp(const void *x, const void *y)
{
    const gen_t *a = x, *b = y;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    return (int)a->len - (int)b->len;
}

static int v4_hosts; /* --v4-hosts: IPv4 prefixes all /32 (a deny list of addresses) */

/* IPv4: ~60% /24, most of the rest /16-/23, 1% /8-/15, in 1.0.0.0-223.x. */
static void gen_v4(gen_t *g)
{
    unsigned r = (unsigned)(rnd() % 1000), len;
    if (v4_hosts)
        len = 32;
    else if (r < 600)
        len = 24;
    else if (r < 990)
        len = 16 + (unsigned)(rnd() % 8);
    else
        len = 8 + (unsigned)(rnd() % 8);
    uint64_t a = (uint64_t)(1 + rnd() % 223) << 56 | (rnd() & 0x00ffffff00000000ull);
    g->hi = a & top(len) & 0xffffffff00000000ull;
    g->len = (uint8_t)len;
    g->family = 4;
}

/* IPv6: mostly /32-/48, some /29-/31 and /49-/64, in 2000::/3. */
static void gen_v6(gen_t *g)
{
    unsigned r = (unsigned)(rnd() % 100), len;
    if (r < 40)
        len = 32;
    else if (r < 55)
        len = 48;
    else if (r < 85)
        len = 33 + (unsigned)(rnd() % 15);
    else if (r < 95)
        len = 29 + (unsigned)(rnd() % 3);
    else
        len = 49 + (unsigned)(rnd() % 16);
    uint64_t a = (rnd() & 0x1fffffffffffffffull) | 0x2000000000000000ull;
    g->hi = a & top(len);
    g->len = (uint8_t)len;
    g->family = 6;
}

static gen_t *generate(size_t n, void (*one)(gen_t *))
{
    gen_t *g = malloc((n ? n : 1) * sizeof *g);
    if (!g) return NULL;
    size_t have = 0;
    while (have < n) {
        for (size_t i = have; i < n; i++)
            one(&g[i]);
        qsort(g, n, sizeof *g, gen_cmp);
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (w == 0 || g[w - 1].hi != g[i].hi || g[w - 1].len != g[i].len) g[w++] = g[i];
        have = w;
    }
    return g;
}

static void to_addr(const gen_t *g, addr_t *a)
{
    if (g->family == 4)
        addr_set_v4(a, (uint32_t)(g->hi >> 32));
    else
        addr_set_v6(a, g->hi, 0);
}

/* "deny a/len" lines, IPv4 first: rule i is g4[i], rule n4 + j is g6[j]. */
static pc_rules_t *compile(const gen_t *g4, size_t n4, const gen_t *g6, size_t n6, double *ms)
{
    size_t cap = (n4 + n6) * 56 + 1, len = 0;
    char *t = malloc(cap);
    if (!t) return NULL;
    for (size_t i = 0; i < n4 + n6; i++) {
        const gen_t *g = i < n4 ? &g4[i] : &g6[i - n4];
        addr_t a;
        to_addr(g, &a);
        char s[PC_ADDR_STRLEN];
        addr_format(&a, s, sizeof s);
        len += (size_t)snprintf(t + len, cap - len, "deny %s/%u\n", s, g->len);
    }
    pc_rules_t *r = NULL;
    char err[200];
    uint64_t t0 = pc__now_ns();
    int rc = pc_rules_load_string(t, len, "bench", &r, err, sizeof err);
    *ms = (double)(pc__now_ns() - t0) / 1e6;
    free(t);
    if (rc) fprintf(stderr, "rules: %s\n", err);
    return r;
}

/* ---- the LPM-trie program --------------------------------------------------- */

typedef struct lpm_prog_s {
    struct bpf_object *obj;
    int fd;
    int pass_fd; /* pass_all: the test-run baseline */
    int batch;   /* loaded with BPF_MAP_UPDATE_BATCH */
} lpm_prog_t;

struct lpm4_key {
    uint32_t prefixlen;
    uint8_t a[4];
};
struct lpm6_key {
    uint32_t prefixlen;
    uint8_t a[16];
};

static int update_many(int fd, const void *keys, const uint32_t *vals, size_t n, size_t ksize,
                       int *batch)
{
    uint32_t count = (uint32_t)n;
    LIBBPF_OPTS(bpf_map_batch_opts, bo);
    if (n && bpf_map_update_batch(fd, keys, vals, &count, &bo) == 0) {
        *batch = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (bpf_map_update_elem(fd, (const char *)keys + i * ksize, &vals[i], BPF_ANY)) return -1;
    return 0;
}

static int lpm_open(lpm_prog_t *p, const gen_t *g4, size_t n4, const gen_t *g6, size_t n6)
{
    memset(p, 0, sizeof *p);
    p->obj = bpf_object__open_mem(pc_kfilter_lpm_obj, pc_kfilter_lpm_obj_len, NULL);
    if (!p->obj) return -1;
    bpf_map__set_max_entries(bpf_object__find_map_by_name(p->obj, "lpm4"), n4 ? (uint32_t)n4 : 1);
    bpf_map__set_max_entries(bpf_object__find_map_by_name(p->obj, "lpm6"), n6 ? (uint32_t)n6 : 1);
    bpf_map__set_max_entries(bpf_object__find_map_by_name(p->obj, "rule_drops"),
                             (uint32_t)(n4 + n6 + 1));
    if (bpf_object__load(p->obj)) return -1;
    p->fd = bpf_program__fd(bpf_object__find_program_by_name(p->obj, "kfilter_lpm"));
    p->pass_fd = bpf_program__fd(bpf_object__find_program_by_name(p->obj, "pass_all"));
    struct lpm4_key *k4 = calloc(n4 + 1, sizeof *k4);
    struct lpm6_key *k6 = calloc(n6 + 1, sizeof *k6);
    uint32_t *v = calloc(n4 + n6 + 1, sizeof *v);
    if (!k4 || !k6 || !v) return -1;
    for (size_t i = 0; i < n4; i++) {
        k4[i].prefixlen = g4[i].len;
        uint32_t a = (uint32_t)(g4[i].hi >> 32);
        k4[i].a[0] = (uint8_t)(a >> 24), k4[i].a[1] = (uint8_t)(a >> 16);
        k4[i].a[2] = (uint8_t)(a >> 8), k4[i].a[3] = (uint8_t)a;
        v[i] = (uint32_t)(i + 1) | KF_VAL_DENY;
    }
    for (size_t i = 0; i < n6; i++) {
        k6[i].prefixlen = g6[i].len;
        addr_store_be64(k6[i].a, g6[i].hi);
        v[n4 + i] = (uint32_t)(n4 + i + 1) | KF_VAL_DENY;
    }
    int rc = update_many(bpf_map__fd(bpf_object__find_map_by_name(p->obj, "lpm4")), k4, v, n4,
                         sizeof *k4, &p->batch);
    if (rc == 0)
        rc = update_many(bpf_map__fd(bpf_object__find_map_by_name(p->obj, "lpm6")), k6, v + n4, n6,
                         sizeof *k6, &p->batch);
    free(k4);
    free(k6);
    free(v);
    return rc;
}

/* ---- packets and runs ------------------------------------------------------- */

typedef struct pkt_s {
    uint8_t b[96];
    uint32_t n;
} pkt_t;

static void packet(pkt_t *p, const addr_t *src, uint8_t flags)
{
    memset(p, 0, sizeof *p);
    uint8_t *ip = p->b + 14, *tcp;
    if (src->family == 4) {
        p->b[12] = 0x08;
        ip[0] = 0x45, ip[3] = 40, ip[8] = 64, ip[9] = 6;
        memcpy(ip + 12, src->b, 4);
        tcp = ip + 20;
    } else {
        p->b[12] = 0x86, p->b[13] = 0xdd;
        ip[0] = 0x60, ip[5] = 20, ip[6] = 6, ip[7] = 64;
        memcpy(ip + 8, src->b, 16);
        tcp = ip + 40;
    }
    tcp[3] = 80, tcp[12] = 5 << 4, tcp[13] = flags;
    p->n = (uint32_t)(tcp + 20 - p->b);
}

/* Give the SYN p its own source port and initial sequence number. */
static void set_attempt(pkt_t *p, uint16_t sport, uint32_t isn)
{
    uint8_t *tcp = p->b + (p->b[12] == 0x08 ? 34 : 54);
    tcp[0] = (uint8_t)(sport >> 8), tcp[1] = (uint8_t)sport;
    tcp[4] = (uint8_t)(isn >> 24), tcp[5] = (uint8_t)(isn >> 16);
    tcp[6] = (uint8_t)(isn >> 8), tcp[7] = (uint8_t)isn;
}

/* Half inside a random prefix of the set, half anywhere in its space. */
static void probe_addr(const gen_t *g, size_t n, int family, addr_t *a)
{
    if (n && (rnd() & 1)) {
        const gen_t *p = &g[rnd() % n];
        uint64_t host = rnd() & ~top(p->len);
        if (family == 4)
            addr_set_v4(a, (uint32_t)((p->hi | host) >> 32));
        else
            addr_set_v6(a, p->hi | host, rnd());
    } else if (family == 4) {
        addr_set_v4(a, (uint32_t)((1 + rnd() % 223) << 24 | (rnd() & 0xffffff)));
    } else {
        addr_set_v6(a, (rnd() & 0x1fffffffffffffffull) | 0x2000000000000000ull, rnd());
    }
}

/* Mean ns per run over the packets; verdict[i] = passed, ns[i] = packet i's
 * ns per run (each if not NULL). */
static double run_all(int fd, const pkt_t *p, size_t n, unsigned repeat, uint8_t *verdict,
                      uint32_t *ns)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p[i].b, .data_size_in = p[i].n,
                    .repeat = repeat);
        if (bpf_prog_test_run_opts(fd, &o)) {
            fprintf(stderr, "BPF_PROG_TEST_RUN: %s\n", strerror(errno));
            exit(1);
        }
        sum += o.duration;
        if (verdict) verdict[i] = o.retval != 0;
        if (ns) ns[i] = o.duration;
    }
    return n ? sum / (double)n : 0;
}

typedef struct opts_s {
    size_t v4, v6, probes;
    unsigned repeat;
} opts_t;

static int mismatches;

/* One rule set: load both layouts, time them, run the probes. */
static void measure(const char *label, const opts_t *o, size_t n4, size_t n6)
{
    gen_t *g4 = generate(n4, gen_v4), *g6 = generate(n6, gen_v6);
    double compile_ms;
    pc_rules_t *r = compile(g4, n4, g6, n6, &compile_ms);
    if (!g4 || !g6 || !r) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    kf_ebpf_config_t cfg = {
        .source_prefix_v4 = 32, .source_prefix_v6 = 128, .source_entries = 1024};
    kf_ebpf_t *k = NULL;
    char why[200] = "";
    uint64_t t0 = pc__now_ns();
    int rc = kf_ebpf_open(&cfg, r, -1, &k, why, sizeof why);
    double flat_ms = (double)(pc__now_ns() - t0) / 1e6;
    if (rc == PC_EPERM) {
        printf("skipped: needs CAP_BPF (%s)\n", why);
        exit(0);
    }
    if (rc) {
        fprintf(stderr, "kf_ebpf_open: %s\n", why);
        exit(1);
    }
    lpm_prog_t lp;
    t0 = pc__now_ns();
    if (lpm_open(&lp, g4, n4, g6, n6)) {
        fprintf(stderr, "LPM trie program: %s\n", strerror(errno));
        exit(1);
    }
    double lpm_ms = (double)(pc__now_ns() - t0) / 1e6;

    size_t np = o->probes;
    pkt_t *p4 = calloc(np, sizeof *p4), *p6 = calloc(np, sizeof *p6);
    uint8_t *va = calloc(np, 1), *vb = calloc(np, 1);
    if (!p4 || !p6 || !va || !vb) exit(1);
    for (size_t i = 0; i < np; i++) {
        addr_t a;
        probe_addr(g4, n4, 4, &a);
        packet(&p4[i], &a, 0x02);
        probe_addr(g6, n6, 6, &a);
        packet(&p6[i], &a, 0x02);
    }
    int ff = kf_ebpf_prog_fd(k);
    struct {
        const char *name;
        const pkt_t *p;
    } fam[2] = {{"v4", p4}, {"v6", p6}};
    for (int f = 0; f < 2; f++) {
        run_all(ff, fam[f].p, np, 1, NULL, NULL); /* warm-up */
        run_all(lp.fd, fam[f].p, np, 1, NULL, NULL);
        double fh = run_all(ff, fam[f].p, np, o->repeat, va, NULL);
        double lh = run_all(lp.fd, fam[f].p, np, o->repeat, vb, NULL);
        double fs = run_all(ff, fam[f].p, np, 1, NULL, NULL);
        double ls = run_all(lp.fd, fam[f].p, np, 1, NULL, NULL);
        size_t bad = 0, dropped = 0;
        for (size_t i = 0; i < np; i++)
            bad += va[i] != vb[i], dropped += !va[i];
        mismatches += (int)bad;
        printf("%s syn_%s flat_hot_ns=%.1f lpm_hot_ns=%.1f ratio_lpm_over_flat=%.2f "
               "flat_single_ns=%.1f lpm_single_ns=%.1f dropped=%zu/%zu mismatches=%zu\n",
               label, fam[f].name, fh, lh, fh > 0 ? lh / fh : 0, fs, ls, dropped, np, bad);
    }
    struct bpf_prog_info info;
    uint32_t il = sizeof info;
    memset(&info, 0, sizeof info);
    unsigned insns = 0;
    if (bpf_obj_get_info_by_fd(ff, &info, &il) == 0) insns = info.xlated_prog_len / 8;
    /* a non-SYN packet of each family: what an accepted socket pays */
    for (int f = 0; f < 2; f++) {
        pkt_t ack;
        addr_t a;
        if (f == 0)
            probe_addr(g4, n4, 4, &a);
        else
            probe_addr(g6, n6, 6, &a);
        packet(&ack, &a, 0x10);
        double base = run_all(lp.pass_fd, &ack, 1, o->repeat * 50, NULL, NULL);
        double fa = run_all(ff, &ack, 1, o->repeat * 50, NULL, NULL);
        double la = run_all(lp.fd, &ack, 1, o->repeat * 50, NULL, NULL);
        printf("%s %s flat_hot_ns=%.1f lpm_hot_ns=%.1f pass_all_ns=%.1f (test-run baseline)", label,
               f == 0 ? "ack" : "ack_v6", fa, la, base);
        if (f == 0) printf(" flat_program_insns=%u", insns);
        printf("\n");
    }
    printf("%s load v4=%zu v6=%zu rules_compile_ms=%.0f flat_load_ms=%.0f lpm_load_ms=%.0f "
           "lpm_updates=%s ratio_lpm_over_flat=%.1f\n",
           label, n4, n6, compile_ms, flat_ms, lpm_ms, lp.batch ? "batch" : "single",
           flat_ms > 0 ? lpm_ms / flat_ms : 0);
    fflush(stdout);
    bpf_object__close(lp.obj);
    kf_ebpf_close(k, -1);
    pc_rules_free(r);
    free(g4), free(g6), free(p4), free(p6), free(va), free(vb);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One run per packet (repeat 1): median and mean in-kernel ns. */
static void run_single(int fd, const pkt_t *p, size_t n, uint32_t *d, double *median, double *mean)
{
    *mean = run_all(fd, p, n, 1, NULL, d);
    qsort(d, n, sizeof *d, cmp_u32);
    *median = n ? d[n / 2] : 0;
}

/* The per-source rate's cost: a SYN of a new connection attempt (its own
 * port and ISN) from one of 4096 sources, with a rate that never runs out
 * (the bucket and its attempt slots are read and written on every SYN)
 * against the same program without a rate, one run per packet. */
static void measure_rate(const opts_t *o)
{
    size_t np = o->probes * 16;
    pkt_t *p = calloc(np, sizeof *p);
    uint32_t *d = calloc(np, sizeof *d);
    if (!p || !d) exit(1);
    for (size_t i = 0; i < np; i++) {
        addr_t a;
        addr_set_v4(&a, 0x0a000000u | (uint32_t)(i % 4096));
        packet(&p[i], &a, 0x02);
        set_attempt(&p[i], (uint16_t)(1024 + i % 60000), (uint32_t)i * 2654435761u);
    }
    kf_ebpf_config_t none = {
        .source_prefix_v4 = 32, .source_prefix_v6 = 64, .source_entries = 65536};
    kf_ebpf_config_t rate = none;
    rate.rate = 1e9, rate.burst = 1000000000u;
    kf_ebpf_t *kn = NULL, *kr = NULL;
    char why[200] = "";
    if (kf_ebpf_open(&none, NULL, -1, &kn, why, sizeof why) ||
        kf_ebpf_open(&rate, NULL, -1, &kr, why, sizeof why)) {
        fprintf(stderr, "kf_ebpf_open: %s\n", why);
        exit(1);
    }
    double mn, an, mr, ar;
    run_single(kf_ebpf_prog_fd(kn), p, np, d, &mn, &an);
    run_single(kf_ebpf_prog_fd(kr), p, np, d, &mr, &ar);
    printf("rate syn_new_attempt packets=%zu sources=4096 no_rate_single_ns=%.0f (mean %.1f) "
           "rate_single_ns=%.0f (mean %.1f) rate_over_none=%.2f\n",
           np, mn, an, mr, ar, mn > 0 ? mr / mn : 0);
    fflush(stdout);
    kf_ebpf_close(kn, -1);
    kf_ebpf_close(kr, -1);
    free(p), free(d);
}

int main(int argc, char **argv)
{
    opts_t o = {.v4 = 1000000, .v6 = 100000, .probes = 4096, .repeat = 200};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--v4") && v)
            o.v4 = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--v6") && v)
            o.v6 = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--probes") && v)
            o.probes = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--repeat") && v)
            o.repeat = (unsigned)strtoul(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--v4-hosts"))
            v4_hosts = 1;
        else if (!strcmp(argv[i], "--seed") && v)
            rng = strtoull(v, NULL, 10) | 1, i++;
        else {
            fprintf(
                stderr,
                "usage: %s [--v4 N] [--v6 N] [--probes N] [--repeat N] [--seed S] [--v4-hosts]\n",
                argv[0]);
            return 2;
        }
    }
    measure("none", &o, 0, 0);
    measure_rate(&o);
    measure("small", &o, 100, 10);
    measure("large", &o, o.v4, o.v6);
    if (mismatches) {
        fprintf(stderr, "verdicts differ between the layouts: %d\n", mismatches);
        return 1;
    }
    return 0;
}
