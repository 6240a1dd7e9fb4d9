/* SPDX-License-Identifier: MIT */
/* The classic-BPF compiler of the listener's kernel filter: compiled programs
 * run in a small interpreter (only the opcodes the compiler emits, loads from
 * a fake TCP segment and IP header) on random rule sets and addresses, and
 * must agree with pc_rules_match; ACK packets always pass within three
 * instructions; the capacity in prefixes is measured. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "portcullis.h"
#include "portcullis/filter.h"
#include "core/alloc.h"
#include "filter/addr.h"
#include "filter/cbpf_compile.h"
#include "filter/rules.h"
#include "budget_alloc.h"
#include "cbpf_run.h"
#include "xorshift.h"

/* ---- interpreter ------------------------------------------------------------ */

/* Run prog on p; returns the verdict (0 = drop) and the instructions executed
 * in *steps. A jump out of the program or an unknown opcode fails the test. */
static uint32_t run(const cbpf_prog_t *prog, const cbpf_pkt_t *p, unsigned *steps)
{
    uint32_t ret = 0;
    size_t n = 0, at = 0;
    int rc = cbpf_run(prog, p, &ret, &n, &at);
    if (rc == CBPF_RUN_OUT)
        fail_msg("pc %lu beyond the program (%lu)", (unsigned long)at, (unsigned long)prog->len);
    if (rc == CBPF_RUN_OPCODE)
        fail_msg("unexpected opcode 0x%x at %lu", prog->insn[at].code, (unsigned long)at);
    *steps = (unsigned)n;
    return ret;
}

static void pkt_make(cbpf_pkt_t *p, const addr_t *src, uint8_t flags)
{
    cbpf_pkt_make(p, src->family == 6, src->b, flags);
}

/* ---- the reference ------------------------------------------------------------ */

static int ref_denied(const pc_rules_t *r, const addr_t *a)
{
    struct sockaddr_storage ss;
    assert_true(addr_to_sockaddr(a, 0, (struct sockaddr *)&ss, sizeof ss) > 0);
    pc_rule_action_t act;
    int rc = pc_rules_match(r, (struct sockaddr *)&ss, &act, NULL);
    assert_true(rc >= 0);
    return rc == 1 && act == PC_RULE_DENY;
}

/* ---- random rule sets ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    return xorshift64(&rng_state);
}

typedef struct gen_s {
    addr_t addr[1200];
    unsigned len[1200];
    size_t n;
    char *text;
    size_t tlen, tcap;
} gen_t;

static void gen_append(gen_t *g, const char *s)
{
    size_t l = strlen(s);
    if (g->tlen + l + 1 > g->tcap) {
        g->tcap = (g->tlen + l + 1) * 2;
        g->text = realloc(g->text, g->tcap);
        assert_non_null(g->text);
    }
    memcpy(g->text + g->tlen, s, l + 1);
    g->tlen += l;
}

static unsigned pick_len(unsigned bits)
{
    static const unsigned edge4[] = {0, 1, 8, 16, 24, 31, 32, 32, 32};
    static const unsigned edge6[] = {0, 1, 32, 48, 64, 96, 127, 128, 128};
    if (rnd() % 2) return (unsigned)(rnd() % (bits + 1));
    return bits == 32 ? edge4[rnd() % 9] : edge6[rnd() % 9];
}

/* Add the rule "deny|allow a/len" to g. */
static void gen_put(gen_t *g, const addr_t *a, unsigned len, int deny)
{
    assert_true(g->n < sizeof g->addr / sizeof g->addr[0]);
    g->addr[g->n] = *a;
    g->len[g->n] = len;
    g->n++;
    char t[PC_ADDR_STRLEN], line[96];
    addr_format(a, t, sizeof t);
    snprintf(line, sizeof line, "%s %s/%u\n", deny ? "deny" : "allow", t, len);
    gen_append(g, line);
}

/* Empty g (its text too). */
static void gen_reset(gen_t *g)
{
    g->n = 0;
    g->tlen = 0;
    gen_append(g, "");
}

/* The rule set of g's text. */
static pc_rules_t *gen_load(const gen_t *g)
{
    pc_rules_t *r = NULL;
    char err[200];
    int rc = pc_rules_load_string(g->text, g->tlen, "gen", &r, err, sizeof err);
    if (rc != 0) fail_msg("generated rules refused: %s", err);
    return r;
}

/* A random prefix of family fam; half of the time inside an earlier one
 * (allow inside deny, deny inside allow, ...). Returns 0 if it exists. */
static int gen_prefix(gen_t *g, int fam)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    a.family = (uint8_t)fam;
    for (int i = 0; i < 16; i++)
        a.b[i] = (uint8_t)rnd();
    if (fam == 4) memset(a.b + 4, 0, 12);
    if (fam == 6 && rnd() % 8 == 0) { /* ::/8-ish area, zero words */
        memset(a.b, 0, 12);
    }
    unsigned bits = fam == 4 ? 32 : 128, len = pick_len(bits);
    for (size_t tries = 0; g->n && tries < 4 && rnd() % 2; tries++) {
        size_t j = rnd() % g->n;
        if (g->addr[j].family != fam || g->len[j] >= bits) continue;
        unsigned plen = g->len[j];
        len = plen + 1 + (unsigned)(rnd() % (bits - plen));
        for (unsigned bit = 0; bit < plen; bit++) { /* keep the parent's bits */
            uint8_t m = (uint8_t)(0x80 >> (bit % 8));
            a.b[bit / 8] = (uint8_t)((a.b[bit / 8] & ~m) | (g->addr[j].b[bit / 8] & m));
        }
        break;
    }
    addr_mask(&a, len);
    if (fam == 6 && addr_is_v4mapped(&a)) return 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->len[i] == len && memcmp(&g->addr[i], &a, sizeof a) == 0) return 0;
    gen_put(g, &a, len, rnd() % 3 != 0);
    return 1;
}

static pc_rules_t *gen_rules(gen_t *g, size_t n, int fam4, int fam6)
{
    gen_reset(g);
    while (g->n < n) {
        int fam = fam4 && fam6 ? (rnd() % 2 ? 4 : 6) : (fam4 ? 4 : 6);
        gen_prefix(g, fam);
    }
    return gen_load(g);
}

/* The address i positions (-1, 0, +1 ...) from a's value, wrapping. */
static addr_t addr_add(addr_t a, int d)
{
    size_t n = a.family == 4 ? 4 : 16;
    while (d > 0) {
        for (size_t i = n; i-- > 0;)
            if (++a.b[i] != 0) break;
        d--;
    }
    while (d < 0) {
        for (size_t i = n; i-- > 0;)
            if (a.b[i]-- != 0) break;
        d++;
    }
    return a;
}

/* The last address of a prefix. */
static addr_t prefix_last(addr_t a, unsigned len)
{
    unsigned bits = a.family == 4 ? 32 : 128;
    for (unsigned bit = len; bit < bits; bit++)
        a.b[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    return a;
}

static void check_addr(const cbpf_prog_t *p, const pc_rules_t *r, const addr_t *a)
{
    cbpf_pkt_t pk;
    unsigned steps;
    pkt_make(&pk, a, 0x02); /* SYN */
    int denied = run(p, &pk, &steps) == 0;
    if (denied != ref_denied(r, a)) {
        char t[PC_ADDR_STRLEN];
        addr_format(a, t, sizeof t);
        fail_msg("%s: program says %s, rules say %s", t, denied ? "drop" : "pass",
                 denied ? "pass" : "drop");
    }
    static const uint8_t acks[] = {0x12, 0x10, 0x11, 0x18, 0x14};
    pkt_make(&pk, a, acks[rnd() % sizeof acks]);
    assert_int_not_equal(run(p, &pk, &steps), 0);
    assert_true(steps <= 3);
    pkt_make(&pk, a, 0x04); /* RST: not judged */
    assert_int_not_equal(run(p, &pk, &steps), 0);
}

static addr_t rand_addr(int fam)
{
    addr_t a;
    memset(&a, 0, sizeof a);
    a.family = (uint8_t)fam;
    for (int i = 0; i < (fam == 4 ? 4 : 16); i++)
        a.b[i] = (uint8_t)rnd();
    if (fam == 6 && addr_is_v4mapped(&a)) a.b[0] = 0x20;
    return a;
}

/* Compile for (family, dual) and check every boundary of every rule plus
 * random addresses of the families the listener receives. */
static void check_set(const pc_rules_t *r, const gen_t *g, int family, int dual, size_t nrand)
{
    cbpf_prog_t p;
    int rc = cbpf_compile(r, family, dual, &p);
    if (rc != 0) fail_msg("compile: %s (len %lu)", pc_strerror(rc), (unsigned long)p.len);
    assert_true(p.len >= 1 && p.len <= CBPF_MAXINSNS);
    assert_int_equal(p.insn[p.len - 1].code, CBPF_RET_K);
    int recv4 = family == 4 || dual, recv6 = family == 6;
    for (size_t i = 0; i < g->n; i++) {
        const addr_t *a = &g->addr[i];
        if ((a->family == 4 && !recv4) || (a->family == 6 && !recv6)) continue;
        addr_t last = prefix_last(*a, g->len[i]);
        addr_t probes[4] = {*a, addr_add(*a, -1), last, addr_add(last, 1)};
        for (int k = 0; k < 4; k++)
            if (!(probes[k].family == 6 && addr_is_v4mapped(&probes[k])))
                check_addr(&p, r, &probes[k]);
    }
    for (size_t i = 0; i < nrand; i++) {
        int fam = recv4 && recv6 ? (rnd() % 2 ? 4 : 6) : (recv4 ? 4 : 6);
        addr_t a = rand_addr(fam);
        check_addr(&p, r, &a);
    }
    cbpf_prog_free(&p);
}

static void test_random_sets(void **state)
{
    (void)state;
    gen_t g = {0};
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + rnd() % 40;
        int mode = round % 3; /* v4 listener, v6 listener, dual-stack */
        pc_rules_t *r = gen_rules(&g, n, mode != 1, mode != 0);
        check_set(r, &g, mode == 0 ? 4 : 6, mode == 2, 200);
        if (mode == 2) { /* the same set on the other listener kinds */
            check_set(r, &g, 4, 0, 100);
            check_set(r, &g, 6, 0, 100);
        }
        pc_rules_free(r);
    }
    free(g.text);
}

/* Sets big enough for trampolines (conditional jumps reach 255). */
static void test_large_sets_trampolines(void **state)
{
    (void)state;
    gen_t g = {0};
    struct {
        size_t n;
        int fam4, fam6, family, dual;
    } cases[] = {{500, 1, 0, 4, 0}, {120, 0, 1, 6, 0}, {300, 1, 1, 6, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int round = 0; round < 3; round++) {
            pc_rules_t *r = gen_rules(&g, cases[c].n, cases[c].fam4, cases[c].fam6);
            cbpf_prog_t p;
            int rc = cbpf_compile(r, cases[c].family, cases[c].dual, &p);
            if (rc == PC_ENOBUFS) { /* a random v6 set of /128s may not fit: fine */
                assert_true(p.len > CBPF_MAXINSNS);
                assert_null(p.insn);
                pc_rules_free(r);
                continue;
            }
            assert_int_equal(rc, 0);
            size_t ja = 0;
            for (size_t i = 0; i < p.len; i++)
                ja += p.insn[i].code == CBPF_JA;
            if (p.len > 600) assert_true(ja > 0);
            cbpf_prog_free(&p);
            check_set(r, &g, cases[c].family, cases[c].dual, 2000);
            pc_rules_free(r);
        }
    }
    free(g.text);
}

/* A dual-stack program jumps over the IPv4 tree to the IPv6 one: directly up
 * to 255 instructions, through a trampoline beyond. IPv4 trees of every size
 * around that reach (isolated /32 denies: two ranges each, plus one for a
 * deny of 0.0.0.0; 254 ranges are a tree of exactly 256), IPv6 packets must
 * still reach the IPv6 tree (::/1 denied). */
static void test_dual_stack_version_jump(void **state)
{
    (void)state;
    gen_t g = {0};
    for (size_t n = 120; n <= 132; n++) {
        for (int zero = 0; zero < 2; zero++) {
            gen_reset(&g);
            addr_t a;
            if (zero) {
                addr_set_v4(&a, 0);
                gen_put(&g, &a, 32, 1);
            }
            for (size_t i = 0; i < n; i++) {
                addr_set_v4(&a, 0x0a000000u + 2 * (uint32_t)i + 1);
                gen_put(&g, &a, 32, 1);
            }
            addr_set_v6(&a, 0, 0);
            gen_put(&g, &a, 1, 1);
            pc_rules_t *r = gen_load(&g);
            check_set(r, &g, 6, 1, 200);
            pc_rules_free(r);
        }
    }
    free(g.text);
}

/* IPv6 comparisons take 2, 5, 8 or 11 instructions (1 to 4 words), so the
 * jump from a comparison over its left subtree takes every length around
 * the 255 a conditional jump reaches (a trampoline beyond): isolated denies
 * of /32, /64, /96 and /128 in turn, sets of every size where the tree
 * stops being one region, every rotation of the lengths. */
static void test_v6_trampoline_reach(void **state)
{
    (void)state;
    static const unsigned lens[] = {32, 64, 96, 128};
    gen_t g = {0};
    for (size_t n = 16; n <= 90; n++) {
        for (size_t rot = 0; rot < 4; rot++) {
            gen_reset(&g);
            for (size_t i = 0; i < n; i++) {
                unsigned len = lens[(i + rot) % 4];
                addr_t a;
                /* 2001:<2i+1>::, the length's last bit set: isolated */
                uint64_t hi = (uint64_t)(0x20010000u + 2 * (uint32_t)i + 1) << 32;
                uint64_t lo = 0;
                if (len == 64) hi |= 1;
                if (len == 96) lo = 1ull << 32;
                if (len == 128) lo = 1;
                addr_set_v6(&a, hi, lo);
                gen_put(&g, &a, len, 1);
            }
            pc_rules_t *r = gen_load(&g);
            check_set(r, &g, 6, 0, 50);
            pc_rules_free(r);
        }
    }
    free(g.text);
}

static pc_rules_t *load(const char *text)
{
    pc_rules_t *r = NULL;
    char err[200];
    if (pc_rules_load_string(text, strlen(text), "t", &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    return r;
}

static uint32_t verdict(const cbpf_prog_t *p, const char *addr, uint8_t flags)
{
    addr_t a;
    const char *why;
    assert_int_equal(addr_parse(addr, strlen(addr), &a, &why), 0);
    cbpf_pkt_t pk;
    pkt_make(&pk, &a, flags);
    unsigned steps;
    return run(p, &pk, &steps);
}

static void test_edges(void **state)
{
    (void)state;
    cbpf_prog_t p;
    /* no rules, or only allows: one instruction, everything passes */
    assert_int_equal(cbpf_compile(NULL, 6, 1, &p), 0);
    assert_int_equal(p.len, 1);
    assert_int_equal(verdict(&p, "10.0.0.1", 0x02), CBPF_PASS);
    cbpf_prog_free(&p);
    pc_rules_t *r = load("allow 10.0.0.0/8\nallow ::/0\n");
    assert_int_equal(cbpf_compile(r, 6, 1, &p), 0);
    assert_int_equal(p.len, 1);
    cbpf_prog_free(&p);
    pc_rules_free(r);

    /* /0 deny with a /32 allow: the example plus the edges */
    r = load("deny 0.0.0.0/0\nallow 127.0.0.1\ndeny ::/0\nallow ::1\n");
    assert_int_equal(cbpf_compile(r, 4, 0, &p), 0);
    assert_int_equal(verdict(&p, "127.0.0.1", 0x02), CBPF_PASS);
    assert_int_equal(verdict(&p, "127.0.0.2", 0x02), 0);
    assert_int_equal(verdict(&p, "0.0.0.0", 0x02), 0);
    assert_int_equal(verdict(&p, "255.255.255.255", 0x02), 0);
    assert_int_equal(verdict(&p, "127.0.0.2", 0x12), CBPF_PASS);
    cbpf_prog_free(&p);
    assert_int_equal(cbpf_compile(r, 6, 1, &p), 0);
    assert_int_equal(verdict(&p, "::1", 0x02), CBPF_PASS);
    assert_int_equal(verdict(&p, "::2", 0x02), 0);
    assert_int_equal(verdict(&p, "::", 0x02), 0);
    assert_int_equal(verdict(&p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0x02), 0);
    assert_int_equal(verdict(&p, "127.0.0.1", 0x02), CBPF_PASS);
    assert_int_equal(verdict(&p, "127.0.0.2", 0x02), 0);
    cbpf_prog_free(&p);
    /* a v6-only listener has no IPv4 tree: its program is shorter */
    cbpf_prog_t p6;
    assert_int_equal(cbpf_compile(r, 6, 0, &p6), 0);
    assert_true(p6.len < p.len || p.len == 0);
    assert_int_equal(p6.ranges4, 0);
    cbpf_prog_free(&p6);
    pc_rules_free(r);

    /* the top of the space: /32 and /128 at all-ones, a /1 */
    r = load("deny 255.255.255.255\ndeny 128.0.0.0/1\nallow 200.0.0.0/8\n"
             "deny ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n");
    assert_int_equal(cbpf_compile(r, 6, 1, &p), 0);
    assert_int_equal(verdict(&p, "255.255.255.255", 0x02), 0);
    assert_int_equal(verdict(&p, "127.255.255.255", 0x02), CBPF_PASS);
    assert_int_equal(verdict(&p, "128.0.0.0", 0x02), 0);
    assert_int_equal(verdict(&p, "200.1.2.3", 0x02), CBPF_PASS);
    assert_int_equal(verdict(&p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0x02), 0);
    assert_int_equal(verdict(&p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 0x02), CBPF_PASS);
    cbpf_prog_free(&p);
    pc_rules_free(r);

    assert_int_equal(cbpf_compile(NULL, 5, 0, &p), PC_EINVAL);
    assert_int_equal(cbpf_compile(NULL, 4, 0, NULL), PC_EINVAL);
}

/* Neighbouring prefixes with one verdict collapse into one range. */
static void test_merge(void **state)
{
    (void)state;
    pc_rules_t *r = load("deny 10.0.0.0/25\ndeny 10.0.0.128/25\ndeny 10.0.1.0/24\n");
    cbpf_prog_t p;
    assert_int_equal(cbpf_compile(r, 4, 0, &p), 0);
    assert_int_equal(p.ranges4, 3); /* pass, deny 10.0.0.0-10.0.1.255, pass */
    cbpf_prog_free(&p);
    pc_rules_free(r);
}

/* The rules head (text), then n prefixes of length len, isolated (every
 * other block: none adjacent), compiled for a listener of family fam (dual:
 * dual-stack): the result, and *p (the caller frees it). */
static int compile_isolated_after(const char *head, int fam, unsigned len, int dual, size_t n,
                                  cbpf_prog_t *p)
{
    gen_t *g = calloc(1, sizeof *g);
    assert_non_null(g);
    gen_append(g, head);
    for (size_t i = 0; i < n; i++) {
        char line[96];
        if (fam == 4) {
            uint32_t v = (uint32_t)((i * 2 + 1) << (32 - len)); /* every other block */
            snprintf(line, sizeof line, "deny %u.%u.%u.%u/%u\n", v >> 24, (v >> 16) & 255,
                     (v >> 8) & 255, v & 255, len);
        } else {
            addr_t a;
            uint64_t odd = (uint64_t)i * 2 + 1; /* every other block */
            addr_set_v6(&a, 0x20010db800000000ull | (len <= 64 ? odd << (64 - len) : 0),
                        len <= 64 ? 0 : odd << (128 - len));
            addr_mask(&a, len);
            char t[PC_ADDR_STRLEN];
            addr_format(&a, t, sizeof t);
            snprintf(line, sizeof line, "deny %s/%u\n", t, len);
        }
        gen_append(g, line);
    }
    pc_rules_t *r = NULL;
    char err[200];
    if (pc_rules_load_string(g->text, g->tlen, "cap", &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    int rc = cbpf_compile(r, fam == 4 ? 4 : 6, dual, p);
    pc_rules_free(r);
    free(g->text);
    free(g);
    return rc;
}

static int compile_isolated(int fam, unsigned len, int dual, size_t n, cbpf_prog_t *p)
{
    return compile_isolated_after("", fam, len, dual, n, p);
}

/* Largest n such that n prefixes (isolated: not adjacent) of length len fit. */
static size_t capacity(int fam, unsigned len, int dual)
{
    size_t lo = 1, hi = 8192;
    while (lo < hi) {
        size_t n = (lo + hi + 1) / 2;
        cbpf_prog_t p;
        int rc = compile_isolated(fam, len, dual, n, &p);
        assert_true(rc == 0 || rc == PC_ENOBUFS);
        if (rc == PC_ENOBUFS) assert_true(p.len > CBPF_MAXINSNS);
        cbpf_prog_free(&p);
        if (rc == 0)
            lo = n;
        else
            hi = n - 1;
    }
    return lo;
}

/* A set that does not fit says how many instructions it needs: counted when
 * it is near the limit, a lower bound (its ranges) when it is far beyond
 * (it was reported as twice its ranges, which overstated the count). */
static void test_too_big_reports(void **state)
{
    (void)state;
    cbpf_prog_t p;
    assert_int_equal(compile_isolated(4, 32, 0, 2040, &p), PC_ENOBUFS); /* 4081 ranges: counted */
    assert_int_equal(p.len_at_least, 0);
    assert_true(p.len > CBPF_MAXINSNS);
    assert_null(p.insn);
    cbpf_prog_free(&p);
    /* 6001 ranges: not counted */
    assert_int_equal(compile_isolated(4, 32, 0, 3000, &p), PC_ENOBUFS);
    assert_int_equal(p.len_at_least, 1);
    assert_int_equal(p.ranges4, 6001);
    assert_int_equal(p.len, 6001);
    cbpf_prog_free(&p);
    /* the same for IPv6 */
    assert_int_equal(compile_isolated(6, 128, 0, 3000, &p), PC_ENOBUFS);
    assert_int_equal(p.len_at_least, 1);
    assert_int_equal(p.ranges6, 6001);
    assert_int_equal(p.len, 6001);
    assert_null(p.insn);
    cbpf_prog_free(&p);
    /* 4096 ranges, a tree far longer than 4096 instructions: counted, never
     * "at least 4096" (which would fit) */
    assert_int_equal(compile_isolated_after("deny 0.0.0.0/32\n", 4, 32, 0, 2048, &p), PC_ENOBUFS);
    assert_int_equal(p.ranges4, CBPF_MAXINSNS);
    assert_true(p.len > CBPF_MAXINSNS);
    cbpf_prog_free(&p);
}

/* The limit to the instruction: sets of every length around it (isolated
 * /32s, two ranges each, and a deny of 0.0.0.0 for one more) fit when they
 * take at most CBPF_MAXINSNS instructions, and only then. */
static void test_limit_exact(void **state)
{
    (void)state;
    int saw_max = 0, saw_over = 0;
    for (size_t n = 2020; n <= 2032; n++) {
        for (int zero = 0; zero < 2; zero++) {
            cbpf_prog_t p;
            int rc = compile_isolated_after(zero ? "deny 0.0.0.0/32\n" : "", 4, 32, 0, n, &p);
            if (rc == 0) {
                assert_true(p.len <= CBPF_MAXINSNS);
                assert_non_null(p.insn);
            } else {
                assert_int_equal(rc, PC_ENOBUFS);
                assert_int_equal(p.len_at_least, 0);
                assert_true(p.len > CBPF_MAXINSNS);
                assert_null(p.insn);
            }
            saw_max |= p.len == CBPF_MAXINSNS;
            saw_over |= p.len == CBPF_MAXINSNS + 1;
            cbpf_prog_free(&p);
        }
    }
    /* the scan met both sides of the limit exactly (else: move it) */
    assert_true(saw_max && saw_over);
}

/* The figures docs/kernel-filter.md quotes (printed), and floors that the
 * tree's shape guarantees (two boundaries per isolated prefix, leaves shared
 * in regions: about two instructions per IPv4 prefix, 2 x (3 x words - 1)
 * per IPv6 one). */
static void test_capacity(void **state)
{
    (void)state;
    size_t c4 = capacity(4, 32, 0), c4d = capacity(4, 24, 1);
    size_t c6h = capacity(6, 128, 0), c6n = capacity(6, 64, 0), c6s = capacity(6, 48, 0);
    print_message("cBPF capacity (isolated deny prefixes): IPv4 /32 %lu, IPv4 /24 on a "
                  "dual-stack listener %lu, IPv6 /128 %lu, /64 %lu, /48 %lu\n",
                  (unsigned long)c4, (unsigned long)c4d, (unsigned long)c6h, (unsigned long)c6n,
                  (unsigned long)c6s);
    assert_true(c4 >= 2000);
    assert_true(c4d >= 2000);
    assert_true(c6h >= 180);
    assert_true(c6n >= 400);
    assert_true(c6s >= 400);
    /* the searches ended on a set that did not fit (PC_ENOBUFS checked there) */
    assert_true(c4 < 8192 && c4d < 8192 && c6h < 8192 && c6n < 8192 && c6s < 8192);
}

/* Every allocation of a dual-stack compile failing in turn (both trees, the
 * program): PC_ENOMEM, no program and nothing leaked, until the budget
 * suffices; then the program is the one an unlimited compile gives. A set
 * with denies, and one with nothing to drop (a one-instruction program). */
static void test_alloc_failure(void **state)
{
    (void)state;
    static const char *const sets[] = {"deny 10.0.0.0/8\nallow 10.1.0.0/16\ndeny 2001:db8::/32\n",
                                       "allow 10.0.0.0/8\n"};
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        budget_alloc_reset(-1);
        pc_rules_t *r = load(sets[i]);
        cbpf_prog_t want;
        assert_int_equal(cbpf_compile(r, 6, 1, &want), 0);
        int ok = 0;
        long budget;
        for (budget = 0; budget < 100 && !ok; budget++) {
            budget_alloc_reset(budget);
            cbpf_prog_t p;
            int rc = cbpf_compile(r, 6, 1, &p);
            if (rc == 0) {
                ok = 1;
                assert_int_equal(p.len, want.len);
                assert_non_null(p.insn);
                assert_memory_equal(p.insn, want.insn, want.len * sizeof *want.insn);
                cbpf_prog_free(&p);
            } else {
                assert_int_equal(rc, PC_ENOMEM);
                assert_null(p.insn);
            }
            assert_int_equal(budget_alloc_live(), 0);
        }
        assert_true(ok);
        assert_true(budget > 4); /* two trees of two arrays each, then the program */
        cbpf_prog_free(&want);
        pc_rules_free(r);
    }
    assert_int_equal(pc_set_allocator(NULL), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_random_sets),
        cmocka_unit_test(test_large_sets_trampolines),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_too_big_reports),
        cmocka_unit_test(test_dual_stack_version_jump),
        cmocka_unit_test(test_limit_exact),
        cmocka_unit_test(test_v6_trampoline_reach),
        cmocka_unit_test(test_alloc_failure),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
