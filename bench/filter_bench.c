/* SPDX-License-Identifier: MIT */
/* pc-filter-bench: build random rule sets with a BGP-like prefix-length mix,
 * then measure longest-prefix lookups and whole pipeline decisions.
 *
 *   pc-filter-bench --v4 1000000 --v6 100000 [--seed S] [--lookups K]
 *                   [--portable-popcount] [--v4-hosts]
 *   pc-filter-bench --list-file N [--list-out PATH] [--seed S]
 *   pc-filter-bench --mem-curve
 *
 * --list-file writes a deny list of N lines the way users build one by
 * concatenating FireHOL .netset and Spamhaus DROP files (5% of the entries
 * repeat an earlier one; a third carry "; SBLnnn", a few '#'/';' comment
 * lines; 97% IPv4 with the BGP-like mix below, 3% IPv6) to PATH (default
 * pc-filter-bench-list.txt, removed afterwards unless --list-out is given),
 * then times loading it as the samples' --deny-list does (builder, read,
 * parse, fold duplicates, compile): the median of 5 loads (list_load_ms).
 *
 * --v4-hosts makes the IPv4 prefixes all /32 (a deny list of addresses);
 * --portable-popcount uses the lookups compiled without the popcnt
 * instruction.
 *
 * --mem-curve prints, for buffers from 256 KiB to 64 MiB, what one dependent
 * load from a random cache line costs (the best of three passes; huge pages
 * where the kernel gives them, as the tables): where this machine's caches
 * end. The main run's table4_kib and table6_kib say where each table falls.
 *
 * Prints one line of key=value pairs. Lookups and decisions are timed in
 * batches of 256 with the monotonic clock (the clock is read once per batch);
 * the medians and p99 are over the per-batch averages of one pass over all
 * the addresses, the best of 5 passes after a warm-up one. Within a batch the
 * lookups are independent, so the CPU overlaps their cache misses: this is
 * the throughput cost per lookup, not the latency of a lone lookup after a
 * system call (lookup_dep_ns reports that: each address depends on the
 * previous result; one pass, on tables the batched passes pushed out of the
 * caches. lookup_dep_warm_ns is the best of three more passes over the same
 * addresses: the tables as warm as this machine's caches keep them when
 * nothing else runs between two lookups, a lower bound for an accept
 * thread; --mem-curve gives the floor under it). It measures; it never
 * fails on a time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"
#include "core/clock.h"
#include "core/vm.h"
#include "filter/addr.h"
#include "filter/pipeline.h"
#include "filter/rules.h"

#define BATCH 256

static uint64_t rng = 1;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t top(unsigned len) /* top len bits of 64 */
{
    return len == 0 ? 0 : len >= 64 ? ~0ull : ~0ull << (64 - len);
}

typedef struct gen_s {
    uint64_t hi; /* IPv4: address << 32; IPv6: top 64 bits (all lengths <= 64) */
    uint8_t len;
} gen_t;

static int gen_cmp(const void *x, const void *y)
{
    const gen_t *a = x, *b = y;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    return (int)a->len - (int)b->len;
}

static int v4_hosts; /* --v4-hosts: a deny list of single addresses instead */

/* IPv4 like a BGP table: ~60% /24, most of the rest /16-/23, 1% /8-/15;
 * unicast space 1.0.0.0-223.255.255.255. */
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
    for (size_t i = n; i > 1; i--) { /* rule files are not sorted */
        size_t j = (size_t)(rnd() % i);
        gen_t t = g[i - 1];
        g[i - 1] = g[j];
        g[j] = t;
    }
    return g;
}

static void to_addr(const gen_t *g, int family, addr_t *a)
{
    if (family == 4)
        addr_set_v4(a, (uint32_t)(g->hi >> 32));
    else
        addr_set_v6(a, g->hi, 0);
}

/* An address: half inside a random generated prefix, half anywhere in the
 * space the prefixes come from (mostly unmatched). */
static void random_addr(const gen_t *g, size_t n, int family, addr_t *a)
{
    if (n > 0 && (rnd() & 1)) {
        const gen_t *p = &g[rnd() % n];
        uint64_t host = rnd() & ~top(p->len);
        if (family == 4) {
            addr_set_v4(a, (uint32_t)((p->hi | host) >> 32));
        } else {
            addr_set_v6(a, p->hi | host, rnd());
        }
    } else if (family == 4) {
        addr_set_v4(a, (uint32_t)((1 + rnd() % 223) << 24 | (rnd() & 0xffffff)));
    } else {
        addr_set_v6(a, (rnd() & 0x1fffffffffffffffull) | 0x2000000000000000ull, rnd());
    }
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

typedef struct dist_s {
    double median, p99;
} dist_t;

static dist_t summarize(double *v, size_t n)
{
    dist_t d = {0, 0};
    if (n == 0) return d;
    qsort(v, n, sizeof *v, cmp_double);
    d.median = v[n / 2];
    d.p99 = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    return d;
}

static volatile uint32_t sink;

/* Timed passes per measurement after one warm-up pass; the pass with the
 * lowest median is reported (other processes on a shared machine only ever
 * make a pass slower). */
#define PASSES 5

static int better(dist_t d, dist_t best, int first)
{
    return first || d.median < best.median;
}

/* Batched lookups over addrs[0..n). */
static dist_t time_lookups(const pc_rules_t *r, const addr_t *addrs, size_t n, double *buf)
{
    size_t nb = n / BATCH;
    dist_t best = {0, 0};
    for (int pass = 0; pass <= PASSES; pass++) {
        for (size_t b = 0; b < nb; b++) {
            const addr_t *a = addrs + b * BATCH;
            uint64_t t0 = pc__now_ns();
            uint32_t acc = 0;
            for (int i = 0; i < BATCH; i++)
                acc += rules_lookup(r, &a[i]);
            uint64_t t1 = pc__now_ns();
            sink += acc;
            buf[b] = (double)(t1 - t0) / BATCH;
        }
        dist_t d = summarize(buf, nb);
        if (pass > 0 && better(d, best, pass == 1)) best = d;
    }
    return best;
}

/* Dependent lookups: the next address depends on the previous result, so
 * nothing overlaps: the latency of one lookup. The result's low bit flips
 * the address's last bit: byte 3 for IPv4 (b[0..3] hold it), byte 15 for
 * IPv6. */
static double time_dependent(const pc_rules_t *r, const addr_t *addrs, size_t n)
{
    if (n == 0) return 0;
    uint32_t prev = 0;
    uint64_t t0 = pc__now_ns();
    for (size_t i = 0; i < n; i++) {
        addr_t a = addrs[i];
        a.b[a.family == 4 ? 3 : 15] ^= (uint8_t)(prev & 1);
        prev = rules_lookup(r, &a);
    }
    uint64_t t1 = pc__now_ns();
    sink += prev;
    return (double)(t1 - t0) / (double)n;
}

/* The same, the best of three passes in a row over the same addresses:
 * from the second on, the tables are as warm as the caches keep them. */
static double time_dependent_warm(const pc_rules_t *r, const addr_t *addrs, size_t n)
{
    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        double d = time_dependent(r, addrs, n);
        if (pass == 0 || d < best) best = d;
    }
    return best;
}

/* The floor under lookup_dep_ns: n dependent loads, each from a random
 * cache line of a buffer as large as the tables (a cyclic random
 * permutation of its lines), timed the same way right after the lookups.
 * A lookup that waits for k cache misses in turn costs about k times this. */
static double time_load_chain(size_t bytes, size_t n)
{
    size_t lines = bytes / 64;
    if (lines < 2 || n == 0) return 0;
    /* in 2 MiB pages where there are (Linux), as the tables: a miss here
     * then costs what a table's does, without a page walk */
    size_t huge = (size_t)2 << 20, total = (lines * 64 + huge - 1) / huge * huge;
    void *mem = malloc(total + huge);
    if (!mem) return 0;
    uint32_t *buf = (uint32_t *)(((uintptr_t)mem + huge - 1) & ~(uintptr_t)(huge - 1));
    pc__vm_hint_huge(buf, total);
    uint32_t *perm = malloc(lines * sizeof *perm);
    if (!perm) {
        free(mem);
        return 0;
    }
    for (size_t i = 0; i < lines; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = lines - 1; i > 0; i--) { /* Sattolo: one cycle through all */
        size_t j = (size_t)(rnd() % i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        buf[(size_t)perm[i] * 16] = perm[(i + 1) % lines];
    free(perm);
    uint32_t at = 0;
    uint64_t t0 = pc__now_ns();
    for (size_t i = 0; i < n; i++)
        at = buf[(size_t)at * 16];
    uint64_t t1 = pc__now_ns();
    sink += at;
    free(mem);
    return (double)(t1 - t0) / (double)n;
}

static void usage(void)
{
    fprintf(stderr, "usage: pc-filter-bench [--v4 N] [--v6 M] [--seed S] [--lookups K] "
                    "[--portable-popcount] [--v4-hosts]\n"
                    "       pc-filter-bench --list-file N [--list-out PATH] [--seed S]\n"
                    "       pc-filter-bench --mem-curve\n");
    exit(2);
}

/* --mem-curve: one dependent load from a random line of a buffer of each
 * size, as load_dep_ns measures for the tables' size: where the machine's
 * caches end, and so how small a table must be for a lookup that waits on
 * its loads to be served from them. */
static int mem_curve(void)
{
    static const unsigned kib[] = {256,  512,  1024,  1536,  2048, 3072,
                                   4096, 8192, 16384, 32768, 65536};
    for (size_t i = 0; i < sizeof kib / sizeof kib[0]; i++) {
        double best = 0;
        /* the best of three passes: the machine's figure, not a neighbour's */
        for (int pass = 0; pass < 3; pass++) {
            double d = time_load_chain((size_t)kib[i] << 10, 1000000);
            if (pass == 0 || (d > 0 && d < best)) best = d;
        }
        if (best <= 0) {
            fprintf(stderr, "pc-filter-bench: out of memory\n");
            return 1;
        }
        printf("mem_curve kib=%u load_dep_ns=%.1f\n", kib[i], best);
    }
    return 0;
}

/* --list-file: write a concatenated deny list, time loading it. */
static int list_bench(size_t n, const char *out)
{
    const char *path = out ? out : "pc-filter-bench-list.txt";
    size_t ndup = n / 20, nuniq = n - ndup, n6 = nuniq * 3 / 100, n4 = nuniq - n6;
    gen_t *g4 = generate(n4, gen_v4), *g6 = generate(n6, gen_v6);
    size_t *pick = malloc((n ? n : 1) * sizeof *pick); /* entry i of the file: unique index */
    FILE *f = fopen(path, "wb");
    if (!g4 || !g6 || !pick || !f) {
        fprintf(stderr, "pc-filter-bench: cannot write %s\n", path);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        pick[i] = i < nuniq ? i : (size_t)(rnd() % nuniq);
    for (size_t i = n; i > 1; i--) { /* repeats anywhere, as concatenation leaves them */
        size_t j = (size_t)(rnd() % i), t = pick[i - 1];
        pick[i - 1] = pick[j];
        pick[j] = t;
    }
    fprintf(f, "#\n# generated by pc-filter-bench --list-file %zu\n#\n", n);
    for (size_t i = 0; i < n; i++) {
        size_t k = pick[i];
        int v6 = k >= n4;
        addr_t a;
        char at[PC_ADDR_STRLEN];
        const gen_t *g = v6 ? &g6[k - n4] : &g4[k];
        to_addr(g, v6 ? 6 : 4, &a);
        addr_format(&a, at, sizeof at);
        if (i % 3 == 1)
            fprintf(f, "%s/%u ; SBL%zu\n", at, g->len, 100000 + k);
        else
            fprintf(f, "%s/%u\n", at, g->len);
        if (i % 50000 == 49999) fprintf(f, "; Spamhaus DROP List, next part\n");
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "pc-filter-bench: cannot write %s\n", path);
        return 1;
    }
    double ms[5];
    size_t rules = 0, dups = 0;
    for (int run = 0; run < 5; run++) {
        char err[512];
        pc_rules_t *r = NULL;
        pc_rules_builder_t *b = NULL;
        uint64_t t0 = pc__now_ns();
        int rc = pc_rules_builder_new(&b);
        if (rc == 0) rc = pc_rules_builder_add_file(b, PC_RULES_DENY_LIST, path, err, sizeof err);
        if (rc == 0)
            rc = pc_rules_builder_finish(b, &r, err, sizeof err);
        else
            pc_rules_builder_free(b);
        uint64_t t1 = pc__now_ns();
        if (rc != 0) {
            fprintf(stderr, "pc-filter-bench: %s\n", err);
            return 1;
        }
        ms[run] = (double)(t1 - t0) / 1e6;
        rules = pc_rules_count(r);
        dups = pc_rules_duplicates(r, NULL, NULL, NULL, 0);
        pc_rules_free(r);
    }
    qsort(ms, 5, sizeof ms[0], cmp_double);
    printf("list_lines=%zu list_rules=%zu list_duplicates=%zu list_load_ms=%.0f "
           "list_load_ms_min=%.0f list_load_ms_max=%.0f\n",
           n, rules, dups, ms[2], ms[0], ms[4]);
    if (!out) remove(path);
    free(g4);
    free(g6);
    free(pick);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n4 = 100000, n6 = 10000, nlook = 0;
    uint64_t seed = 1;
    int portable = 0;
    size_t list_lines = 0;
    const char *list_out = NULL;
    int mem_curve_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--portable-popcount") == 0) { /* as on a CPU without popcnt */
            portable = 1;
            continue;
        }
        if (strcmp(argv[i], "--v4-hosts") == 0) {
            v4_hosts = 1;
            continue;
        }
        if (strcmp(argv[i], "--mem-curve") == 0) {
            mem_curve_only = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--list-out") == 0) {
            list_out = argv[++i];
            continue;
        }
        char *end;
        unsigned long long v = strtoull(argv[i + 1], &end, 10);
        if (*end != '\0') usage();
        if (strcmp(argv[i], "--v4") == 0)
            n4 = (size_t)v;
        else if (strcmp(argv[i], "--v6") == 0)
            n6 = (size_t)v;
        else if (strcmp(argv[i], "--seed") == 0)
            seed = v;
        else if (strcmp(argv[i], "--lookups") == 0)
            nlook = (size_t)v;
        else if (strcmp(argv[i], "--list-file") == 0 && v > 0 && v <= 60000000)
            list_lines = (size_t)v;
        else
            usage();
        i++;
    }
    if (nlook == 0) { /* default: four per prefix, within [64Ki, 1Mi] */
        nlook = 4 * (n4 + n6);
        if (nlook < 65536) nlook = 65536;
        if (nlook > ((size_t)1 << 20)) nlook = (size_t)1 << 20;
    }
    if (nlook < BATCH) nlook = BATCH;
    if (n4 > 16000000 || n6 > 16000000) {
        fprintf(stderr, "pc-filter-bench: at most 16M prefixes per family\n");
        return 2;
    }
    rng = seed * 0x9e3779b97f4a7c15ull + 1;
    if (list_lines) return list_bench(list_lines, list_out);
    if (mem_curve_only) return mem_curve();

    /* ---- rule text ---- */
    gen_t *g4 = generate(n4, gen_v4), *g6 = generate(n6, gen_v6);
    size_t cap = (n4 + n6) * 64 + 64;
    char *text = malloc(cap);
    if (!g4 || !g6 || !text) {
        fprintf(stderr, "pc-filter-bench: out of memory\n");
        return 1;
    }
    size_t len = 0;
    for (size_t i = 0; i < n4 + n6; i++) {
        int v6 = i >= n4;
        const gen_t *g = v6 ? &g6[i - n4] : &g4[i];
        addr_t a;
        char at[PC_ADDR_STRLEN];
        to_addr(g, v6 ? 6 : 4, &a);
        addr_format(&a, at, sizeof at);
        len += (size_t)snprintf(text + len, cap - len, "%s %s/%u\n", rnd() % 4 ? "deny" : "allow",
                                at, g->len);
    }

    /* ---- build ---- */
    pc_rules_t *r = NULL;
    char err[256];
    uint64_t t0 = pc__now_ns();
    int rc = pc_rules_load_string(text, len, "generated", &r, err, sizeof err);
    uint64_t t1 = pc__now_ns();
    free(text);
    if (rc != 0) {
        fprintf(stderr, "pc-filter-bench: %s\n", err);
        return 1;
    }
    double build_ms = (double)(t1 - t0) / 1e6;
    if (portable) r->t4.hw_popcnt = r->t6.hw_popcnt = 0;
    size_t nprefix = n4 + n6 ? n4 + n6 : 1;
    double bytes_per_prefix = (double)rules_table_bytes(r) / (double)nprefix;
    double set_bytes = (double)rules_total_bytes(r) / (double)nprefix;

    /* ---- lookups ---- */
    size_t k4 = n4 + n6 ? (size_t)((double)nlook * (double)n4 / (double)(n4 + n6)) : nlook;
    addr_t *mixed = malloc(nlook * sizeof *mixed);
    addr_t *only4 = malloc(nlook * sizeof *only4);
    addr_t *only6 = malloc(nlook * sizeof *only6);
    double *buf = malloc((nlook / BATCH + 1) * sizeof *buf);
    if (!mixed || !only4 || !only6 || !buf) {
        fprintf(stderr, "pc-filter-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nlook; i++) {
        int v4 = (size_t)(rnd() % nlook) < k4;
        random_addr(v4 ? g4 : g6, v4 ? n4 : n6, v4 ? 4 : 6, &mixed[i]);
        random_addr(g4, n4, 4, &only4[i]);
        random_addr(g6, n6, 6, &only6[i]);
    }
    dist_t look = time_lookups(r, mixed, nlook, buf);
    dist_t look4 = time_lookups(r, only4, nlook, buf);
    dist_t look6 = time_lookups(r, only6, nlook, buf);
    size_t ndep = nlook < 200000 ? nlook : 200000;
    double dep = time_dependent(r, mixed, ndep);
    double dep4 = time_dependent(r, only4, ndep);
    double dep6 = time_dependent(r, only6, ndep);
    double chain = time_load_chain(rules_table_bytes(r), ndep);
    double wdep = time_dependent_warm(r, mixed, ndep);
    double wdep4 = time_dependent_warm(r, only4, ndep);
    double wdep6 = time_dependent_warm(r, only6, ndep);
    int hw = r->t4.hw_popcnt;
    size_t kib4 = lpm_bytes(&r->t4) >> 10, kib6 = lpm_bytes(&r->t6) >> 10;

    /* ---- decisions: rules + per-source tracker, then release ---- */
    filter_config_t cfg;
    filter_config_init(&cfg);
    cfg.per_source_max = 1000;
    cfg.per_source_rate = 1e6;
    cfg.per_source_burst = 1000000;
    filter_t *f = NULL;
    if (filter_create(&cfg, &f) != 0 || filter_set_rules(f, r) != 0) {
        fprintf(stderr, "pc-filter-bench: filter setup failed\n");
        return 1;
    }
    /* sources: a pool of 8192 (a busy server's active clients), repeating */
    size_t pool = nlook / BATCH * BATCH < 8192 ? nlook / BATCH * BATCH : 8192;
    size_t ndec = nlook / 2;
    size_t nb = ndec / BATCH;
    uint64_t accepted = 0, decided = 0;
    dist_t dec = {0, 0};
    for (int pass = 0; pass <= PASSES; pass++) {
        for (size_t b = 0; b < nb; b++) {
            const addr_t *a = mixed + (b * BATCH) % pool;
            uint64_t s = pc__now_ns();
            for (int i = 0; i < BATCH; i++) {
                filter_ticket_t t;
                if (filter_decide(f, 0, &a[i], s, 0, NULL, NULL, &t, NULL) == PC_ACCEPT) {
                    filter_release(f, &t);
                    accepted++;
                }
            }
            buf[b] = (double)(pc__now_ns() - s) / BATCH;
            decided += BATCH;
        }
        dist_t d = summarize(buf, nb);
        if (pass > 0 && better(d, dec, pass == 1)) dec = d;
    }
    filter_stats_t st;
    filter_stats(f, &st);
    filter_destroy(f);

    printf("v4=%zu v6=%zu lookup_ns_median=%.1f lookup_ns_p99=%.1f build_ms=%.0f "
           "bytes_per_prefix=%.1f decision_ns_median=%.1f lookup_v4_ns_median=%.1f "
           "lookup_v6_ns_median=%.1f lookup_dep_ns=%.1f decision_ns_p99=%.1f "
           "lookup_dep_v4_ns=%.1f lookup_dep_v6_ns=%.1f load_dep_ns=%.1f "
           "lookup_dep_over_load=%.2f decision_accept_pct=%.0f tracker_full=%llu "
           "set_bytes_per_rule=%.1f popcnt=%s table4_kib=%zu table6_kib=%zu "
           "lookup_dep_warm_ns=%.1f lookup_dep_warm_v4_ns=%.1f lookup_dep_warm_v6_ns=%.1f\n",
           n4, n6, look.median, look.p99, build_ms, bytes_per_prefix, dec.median, look4.median,
           look6.median, dep, dec.p99, dep4, dep6, chain, chain > 0 ? dep / chain : 0,
           decided ? 100.0 * (double)accepted / (double)decided : 0,
           (unsigned long long)st.tracker_full, set_bytes, hw ? "hw" : "portable", kib4, kib6, wdep,
           wdep4, wdep6);
    free(mixed);
    free(only4);
    free(only6);
    free(buf);
    free(g4);
    free(g6);
    return 0;
}
