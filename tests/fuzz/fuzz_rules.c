/* SPDX-License-Identifier: MIT */
/* Fuzz target: the accept rules text format (pc_rules_load_string), the last
 * parser of untrusted input (operators' rule files) without one.
 *
 * Invariants checked (abort() on violation, so libFuzzer reports a finding):
 *   - failure: *out is NULL; the message is NUL-terminated inside errlen,
 *     nothing is written past errlen, and a parse error reads
 *     "NAME:LINE: reason" with 1 <= LINE <= lines of the input; a shorter
 *     err buffer gets a truncated prefix of the same message;
 *   - success: the message is empty; count <= lines; pc_rules_get describes
 *     every rule consistently (lines strictly increasing, text
 *     "ACTION ADDR/LEN" that inet_pton accepts, no host bits, no hits);
 *   - pc_rules_match on addresses derived from the input (IPv4, IPv6 and
 *     IPv4-mapped IPv6) agrees with a brute-force longest-prefix match over
 *     the rules, and pc_rules_match_text agrees with pc_rules_match;
 *   - round trip: the canonical texts, one per line, load again into a set
 *     with the same rules (text, action, prefix) that decides the same;
 *   - duplicates: rules + folded duplicates <= lines; when there are any,
 *     the first example's lines are ordered (repeat after the original),
 *     within the input, and the summary names the repeat's line;
 *   - the same input as a plain deny list (pc_rules_builder_*,
 *     PC_RULES_DENY_LIST): a failure reads "NAME:LINE: reason" within the
 *     input (or out of memory); a success passes the same checks as above,
 *     every rule a deny.
 *
 * Library allocations are routed to the C library so ASan sees them (the
 * default allocator, mimalloc, is invisible to it). All scratch space here
 * is static: the target itself allocates nothing. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "portcullis.h"
#include "fuzz_common.h"
#include "portcullis/filter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_MAX  (64 * 1024)
#define ERR_LEN 256
#define ERR_BUF (ERR_LEN + 64) /* the tail past ERR_LEN must stay untouched */
#define CANARY  0x5a
/* The shortest rule takes 8 bytes ("deny ::" and a newline), the shortest
 * list entry 3 ("::" and a newline), so an input of IN_MAX bytes holds fewer
 * rules than this. */
#define RULES_CAP (IN_MAX / 2 + 1)
#define NAME      "fuzz.rules"
#define RT_NAME   "roundtrip"

/* A rule as an independent parser (inet_pton) reads its canonical text. */
typedef struct ref_rule_s {
    uint8_t family; /* 4 or 6 */
    uint8_t len;
    uint8_t action;
    uint8_t b[16]; /* network order; IPv4 in b[0..3] */
} ref_rule_t;

static ref_rule_t g_ref[RULES_CAP];
static char g_text[RULES_CAP * PC_RULE_TEXT_MAX];
static char g_err[ERR_BUF], g_err2[ERR_BUF];
/* A non-NULL pointer the loader must overwrite with NULL on failure. */
static max_align_t g_sentinel;
#define SENTINEL ((pc_rules_t *)(void *)&g_sentinel)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_use_libc_allocator();
    return 0;
}

/* ---- deterministic pseudo-random addresses from the input ---------------- */

static void rng_fill(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng_next();
        for (size_t k = 0; k < 8 && i + k < n; k++)
            b[i + k] = (uint8_t)(v >> (8 * k));
    }
}

/* ---- helpers ------------------------------------------------------------- */

static size_t count_lines(const uint8_t *data, size_t size)
{
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    return lines;
}

static int bit(const uint8_t *b, unsigned i)
{
    return (b[i / 8] >> (7 - i % 8)) & 1;
}

static int is_mapped(const uint8_t b[16])
{
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(b, pre, 12) == 0;
}

/* Do the first len bits of x and p agree? */
static int in_prefix(const uint8_t *x, const uint8_t *p, unsigned len)
{
    unsigned whole = len / 8, rest = len % 8;
    if (memcmp(x, p, whole) != 0) return 0;
    if (rest == 0) return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return ((x[whole] ^ p[whole]) & m) == 0;
}

/* Parse "ACTION ADDR/LEN" (a canonical rule text) into *r with inet_pton and
 * check it against what pc_rules_get reported. addr receives "ADDR". */
static void ref_from_info(const pc_rule_info_t *in, ref_rule_t *r, char *addr, size_t addrlen)
{
    const char *t = in->text;
    if (!memchr(t, '\0', sizeof in->text)) abort();
    const char *sp = strchr(t, ' ');
    if (!sp) abort();
    size_t an = (size_t)(sp - t);
    if (in->action == PC_RULE_ALLOW) {
        if (an != 5 || memcmp(t, "allow", 5) != 0) abort();
    } else if (in->action == PC_RULE_DENY) {
        if (an != 4 || memcmp(t, "deny", 4) != 0) abort();
    } else {
        abort();
    }
    const char *a = sp + 1, *sl = strchr(a, '/');
    if (!sl || (size_t)(sl - a) >= addrlen) abort();
    memcpy(addr, a, (size_t)(sl - a));
    addr[sl - a] = '\0';
    const char *l = sl + 1;
    if (l[0] < '0' || l[0] > '9' || (l[0] == '0' && l[1] != '\0')) abort();
    unsigned len = 0;
    for (; *l; l++) {
        if (*l < '0' || *l > '9' || len > 128) abort();
        len = len * 10 + (unsigned)(*l - '0');
    }
    if (len != in->prefix_len) abort();

    memset(r, 0, sizeof *r);
    r->action = (uint8_t)in->action;
    r->len = (uint8_t)len;
    if (in->family == 4) {
        if (len > 32 || inet_pton(AF_INET, addr, r->b) != 1) abort();
        r->family = 4;
    } else if (in->family == 6) {
        if (len > 128 || inet_pton(AF_INET6, addr, r->b) != 1) abort();
        r->family = 6;
        /* documented: refused, since mapped peers are matched as IPv4 */
        if (len >= 96 && is_mapped(r->b)) abort();
    } else {
        abort();
    }
    /* documented: host bits beyond the length are refused */
    for (unsigned i = len; i < (r->family == 4 ? 32u : 128u); i++)
        if (bit(r->b, i)) abort();
}

/* Brute-force longest-prefix match: the deciding rule index, or SIZE_MAX. */
static size_t ref_match(size_t n, int family, const uint8_t *b)
{
    uint8_t v4[4];
    if (family == 6 && is_mapped(b)) { /* matched as IPv4 */
        memcpy(v4, b + 12, 4);
        b = v4;
        family = 4;
    }
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const ref_rule_t *r = &g_ref[i];
        if (r->family != family || !in_prefix(b, r->b, r->len)) continue;
        /* repeats of a prefix are folded into one rule (or refused when the
         * actions differ), so two matches never share a length */
        if (best != SIZE_MAX && g_ref[best].len == r->len) abort();
        if (best == SIZE_MAX || r->len > g_ref[best].len) best = i;
    }
    return best;
}

/* pc_rules_match through a real socket address; returns the rule index or
 * SIZE_MAX, aborting if the answer differs from the brute-force one. */
static size_t check_sa(const pc_rules_t *set, size_t n, int family, const uint8_t *b)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(4242);
        memcpy(&s4->sin_addr, b, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(4242);
        memcpy(&s6->sin6_addr, b, 16);
    }
    pc_rule_action_t act = (pc_rule_action_t)-1;
    size_t idx = SIZE_MAX;
    int rc = pc_rules_match(set, (const struct sockaddr *)&ss, &act, &idx);
    size_t want = ref_match(n, family, b);
    if (want == SIZE_MAX) {
        if (rc != 0) abort();
        return SIZE_MAX;
    }
    if (rc != 1 || idx != want || act != (pc_rule_action_t)g_ref[want].action) abort();
    /* the NULL out-parameters are optional */
    if (pc_rules_match(set, (const struct sockaddr *)&ss, NULL, NULL) != 1) abort();
    return idx;
}

/* Check an address in both families' forms where it has two (IPv4 and
 * ::ffff:IPv4 must decide alike) and in text form. */
static size_t check_addr(const pc_rules_t *set, size_t n, int family, const uint8_t *b)
{
    size_t got = check_sa(set, n, family, b);
    if (family == 4) {
        uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(m + 12, b, 4);
        if (check_sa(set, n, 6, m) != got) abort();
    }
    char t[INET6_ADDRSTRLEN];
    if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, b, t, sizeof t)) abort();
    size_t idx = SIZE_MAX;
    int rc = pc_rules_match_text(set, t, NULL, &idx);
    if (rc < 0) {
        /* inet_ntop may print forms the strict parser refuses (none known);
         * only a mismatch on accepted text is a finding */
        return got;
    }
    if ((rc == 1 ? idx : SIZE_MAX) != got) abort();
    return got;
}

/* An address inside (or, with outside set, just outside) rule i's prefix,
 * host bits from the generator. */
static int addr_near_rule(size_t i, int outside, uint8_t *b)
{
    const ref_rule_t *r = &g_ref[i];
    unsigned bits = r->family == 4 ? 32u : 128u;
    uint8_t rnd[16];
    rng_fill(rnd, sizeof rnd);
    for (unsigned k = 0; k < bits; k++) {
        int v = k < r->len ? bit(r->b, k) : bit(rnd, k);
        if (outside && r->len > 0 && k == r->len - 1u) v = !v;
        if (v)
            b[k / 8] |= (uint8_t)(0x80 >> (k % 8));
        else
            b[k / 8] &= (uint8_t) ~(0x80 >> (k % 8));
    }
    return r->family;
}

/* A failure's message: "NAME:LINE: reason" with LINE in 1..lines. */
static void check_where(const char *msg, size_t lines)
{
    size_t nl = strlen(NAME);
    if (strncmp(msg, NAME ":", nl + 1) != 0) abort();
    const char *p = msg + nl + 1;
    if (*p < '1' || *p > '9') abort();
    size_t line = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        line = line * 10 + (size_t)(*p - '0');
        if (line > lines) abort();
    }
    if (p[0] != ':' || p[1] != ' ' || p[2] == '\0') abort();
}

static void check_duplicates(const pc_rules_t *set, size_t lines)
{
    unsigned dup = 0, first = 0;
    char msg[ERR_LEN];
    size_t nd = pc_rules_duplicates(set, &dup, &first, msg, sizeof msg);
    if (pc_rules_count(set) + nd > lines) abort();
    if (nd == 0) {
        if (dup != 0 || first != 0 || msg[0] != '\0') abort();
        return;
    }
    if (first == 0 || dup <= first || dup > lines) abort();
    char where[64];
    snprintf(where, sizeof where, "first: " NAME ":%u: ", dup);
    if (!strstr(msg, where)) abort();
}

/* The input as a plain deny list. */
static void check_as_list(const uint8_t *data, size_t size, size_t lines);

/* ---- the failure path ---------------------------------------------------- */

static void check_error(const uint8_t *data, size_t size, int rc, size_t lines)
{
    if (memchr(g_err, '\0', ERR_LEN) == NULL) abort();
    for (size_t i = ERR_LEN; i < ERR_BUF; i++)
        if ((unsigned char)g_err[i] != CANARY) abort();
    size_t mlen = strlen(g_err);
    if (mlen == 0) abort();
    if (rc == PC_ENOMEM) {
        if (strcmp(g_err, NAME ": out of memory") != 0) abort();
        return;
    }
    if (rc != PC_EPARSE) abort(); /* PC_EINVAL needs > 2^26 rules */
    size_t nl = strlen(NAME);
    if (strncmp(g_err, NAME ":", nl + 1) != 0) abort();
    const char *p = g_err + nl + 1;
    if (*p < '1' || *p > '9') abort();
    size_t line = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        line = line * 10 + (size_t)(*p - '0');
        if (line > lines) abort();
    }
    if (p[0] != ':' || p[1] != ' ' || p[2] == '\0') abort();
    check_where(g_err, lines);

    /* Same text, smaller or absent buffer: same verdict, truncated message. */
    size_t small = (size_t)(rng_next() % 48);
    memset(g_err2, CANARY, sizeof g_err2);
    pc_rules_t *r2 = SENTINEL;
    int rc2 =
        pc_rules_load_string((const char *)data, size, NAME, &r2, small ? g_err2 : NULL, small);
    if (rc2 != rc || r2 != NULL) abort();
    if (small == 0) {
        for (size_t i = 0; i < ERR_BUF; i++)
            if ((unsigned char)g_err2[i] != CANARY) abort();
        return;
    }
    size_t keep = mlen < small - 1 ? mlen : small - 1;
    if (memcmp(g_err2, g_err, keep) != 0 || g_err2[keep] != '\0') abort();
    for (size_t i = small; i < ERR_BUF; i++)
        if ((unsigned char)g_err2[i] != CANARY) abort();
}

/* ---- the success path ---------------------------------------------------- */

#define N_PROBES 24

static void check_set(const pc_rules_t *set, size_t lines)
{
    size_t n = pc_rules_count(set);
    if (n > lines || n >= RULES_CAP) abort();
    check_duplicates(set, lines);
    pc_rule_info_t in;
    if (pc_rules_get(set, n, &in) != PC_EINVAL) abort();
    if (pc_rules_get(set, 0, NULL) != PC_EINVAL) abort();

    size_t tl = 0;
    unsigned prev_line = 0;
    for (size_t i = 0; i < n; i++) {
        if (pc_rules_get(set, i, &in) != 0) abort();
        if (in.line <= prev_line || in.line > lines || in.hits != 0) abort();
        prev_line = in.line;
        char addr[PC_RULE_TEXT_MAX];
        ref_from_info(&in, &g_ref[i], addr, sizeof addr);
        size_t k = strlen(in.text);
        memcpy(g_text + tl, in.text, k);
        tl += k;
        g_text[tl++] = '\n';
    }
    /* Each rule's own network address is decided by it or a longer prefix
     * (g_ref is complete now). */
    for (size_t i = 0; i < n; i++) {
        char addr[PC_RULE_TEXT_MAX];
        if (pc_rules_get(set, i, &in) != 0) abort();
        ref_from_info(&in, &g_ref[i], addr, sizeof addr);
        size_t idx = SIZE_MAX;
        if (pc_rules_match_text(set, addr, NULL, &idx) != 1 || idx >= n ||
            g_ref[idx].family != g_ref[i].family || g_ref[idx].len < g_ref[i].len ||
            !in_prefix(g_ref[i].b, g_ref[idx].b, g_ref[idx].len))
            abort();
    }

    /* Probes: random addresses of both families, then addresses in and
     * just outside a few rules' prefixes. */
    int fam[N_PROBES];
    uint8_t pb[N_PROBES][16];
    size_t res[N_PROBES];
    int np = 0;
    for (int k = 0; k < 4; k++) {
        memset(pb[np], 0, 16);
        fam[np] = (k & 1) ? 6 : 4;
        rng_fill(pb[np], fam[np] == 4 ? 4 : 16);
        np++;
    }
    while (n > 0 && np + 2 <= N_PROBES) {
        size_t i = (size_t)(rng_next() % n);
        memset(pb[np], 0, 16);
        fam[np] = addr_near_rule(i, 0, pb[np]);
        np++;
        memset(pb[np], 0, 16);
        fam[np] = addr_near_rule(i, 1, pb[np]);
        np++;
    }
    for (int k = 0; k < np; k++)
        res[k] = check_addr(set, n, fam[k], pb[k]);

    /* Round trip through the canonical texts. */
    pc_rules_t *again = NULL;
    memset(g_err2, CANARY, sizeof g_err2);
    int rc = pc_rules_load_string(g_text, tl, RT_NAME, &again, g_err2, ERR_LEN);
    if (rc != 0) {
        fprintf(stderr, "round trip refused: %s\n", g_err2);
        abort();
    }
    if (pc_rules_count(again) != n) abort();
    for (size_t i = 0; i < n; i++) {
        pc_rule_info_t a, b;
        if (pc_rules_get(set, i, &a) != 0 || pc_rules_get(again, i, &b) != 0) abort();
        if (strcmp(a.text, b.text) != 0 || a.action != b.action || a.family != b.family ||
            a.prefix_len != b.prefix_len || b.line != i + 1) {
            fprintf(stderr, "round trip changed rule %zu: '%s' -> '%s'\n", i, a.text, b.text);
            abort();
        }
    }
    for (int k = 0; k < np; k++)
        if (check_addr(again, n, fam[k], pb[k]) != res[k]) abort();
    pc_rules_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > IN_MAX) return 0;
    rng_seed(data, size);
    size_t lines = count_lines(data, size);

    memset(g_err, CANARY, sizeof g_err);
    pc_rules_t *set = SENTINEL;
    /* data is passed as is (not NUL-terminated): ASan sees any over-read */
    int rc = pc_rules_load_string((const char *)data, size, NAME, &set, g_err, ERR_LEN);
    if (rc != 0) {
        if (rc > 0 || set != NULL) abort();
        check_error(data, size, rc, lines);
    } else {
        if (!set || g_err[0] != '\0') abort();
        /* a live set pins the allocator */
        if (pc_set_allocator(NULL) != PC_EBUSY) abort();
        check_set(set, lines);
        pc_rules_free(set);
    }
    check_as_list(data, size, lines);
    return 0;
}

static void check_as_list(const uint8_t *data, size_t size, size_t lines)
{
    pc_rules_builder_t *b = NULL;
    if (pc_rules_builder_new(&b) != 0) return; /* out of memory */
    memset(g_err, CANARY, sizeof g_err);
    int rc = pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, (const char *)data, size, NAME,
                                         g_err, ERR_LEN);
    pc_rules_t *set = SENTINEL;
    if (rc == 0) {
        rc = pc_rules_builder_finish(b, &set, g_err, ERR_LEN);
        if (rc == 0 && (!set || g_err[0] != '\0')) abort();
        if (rc != 0 && set != NULL) abort(); /* a deny list alone has no conflicts */
    } else {
        pc_rules_builder_free(b);
    }
    if (memchr(g_err, '\0', ERR_LEN) == NULL) abort();
    for (size_t i = ERR_LEN; i < ERR_BUF; i++)
        if ((unsigned char)g_err[i] != CANARY) abort();
    if (rc == PC_ENOMEM) return;
    if (rc != 0) {
        if (rc != PC_EPARSE) abort();
        check_where(g_err, lines);
        return;
    }
    pc_rule_info_t in;
    for (size_t i = 0; i < pc_rules_count(set); i++)
        if (pc_rules_get(set, i, &in) != 0 || in.action != PC_RULE_DENY) abort();
    check_set(set, lines);
    pc_rules_free(set);
}
