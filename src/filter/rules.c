/* Rule sets: strict parsing of the text format, compilation into the prefix
 * tables, counters, lookups (see include/portcullis/filter.h). */
#include "filter/rules.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct parse_s {
    const char *name;
    char *err;
    size_t errlen;
    rule_t *rule;
    size_t n, cap;
    uint8_t (*v6)[16];
    size_t n4, n6, cap6;
} parse_t;

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int is_delim(char c)
{
    return is_ws(c) || c == '#';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) PC__PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int perr(parse_t *ps, unsigned line, const char *fmt, ...) PC__PRINTF(3, 4);
static int perr(parse_t *ps, unsigned line, const char *fmt, ...)
{
    if (!ps->err || ps->errlen == 0) return PC_EPARSE;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s:%u: %s", ps->name, line, msg);
    return PC_EPARSE;
}

/* Quote a token for a message: at most 40 bytes, unprintable bytes as '?'. */
static const char *show(char *dst, size_t dn, const char *s, size_t n)
{
    size_t lim = dn - 4, k = 0;
    for (size_t i = 0; i < n && k < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > lim) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = '\0';
    return dst;
}

static const char *action_name(unsigned action)
{
    return action == PC_RULE_DENY ? "deny" : "allow";
}

static int add_rule(parse_t *ps, unsigned line, pc_rule_action_t action, const pc_addr_t *a,
                    unsigned len)
{
    if (ps->n >= RULES_MAX) {
        perr(ps, line, "too many rules (at most %zu)", (size_t)RULES_MAX);
        return PC_EINVAL;
    }
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? ps->cap * 2 : 256;
        rule_t *nr = pc__realloc(ps->rule, nc * sizeof *nr);
        if (!nr) return PC_ENOMEM;
        ps->rule = nr;
        ps->cap = nc;
    }
    rule_t *r = &ps->rule[ps->n];
    memset(r, 0, sizeof *r);
    r->line = line;
    r->family = a->family;
    r->len = (uint8_t)len;
    r->action = (uint8_t)action;
    if (a->family == 4) {
        r->a4 = addr_v4_u32(a);
        ps->n4++;
    } else {
        if (ps->n6 == ps->cap6) {
            size_t nc = ps->cap6 ? ps->cap6 * 2 : 64;
            uint8_t(*nv)[16] = pc__realloc(ps->v6, nc * sizeof *nv);
            if (!nv) return PC_ENOMEM;
            ps->v6 = nv;
            ps->cap6 = nc;
        }
        memcpy(ps->v6[ps->n6], a->b, 16);
        r->a4 = (uint32_t)ps->n6++;
    }
    ps->n++;
    return 0;
}

/* One line [p, e) without its newline. */
static int parse_line(parse_t *ps, unsigned line, const char *p, const char *e)
{
    char q[48];
    while (p < e && is_ws(*p))
        p++;
    if (p == e || *p == '#') return 0;

    const char *tok = p;
    while (p < e && !is_delim(*p))
        p++;
    size_t tn = (size_t)(p - tok);
    pc_rule_action_t action;
    if (tn == 5 && memcmp(tok, "allow", 5) == 0) {
        action = PC_RULE_ALLOW;
    } else if (tn == 4 && memcmp(tok, "deny", 4) == 0) {
        action = PC_RULE_DENY;
    } else {
        return perr(ps, line, "unknown action '%s' (expected 'allow' or 'deny')",
                    show(q, sizeof q, tok, tn));
    }
    while (p < e && is_ws(*p))
        p++;
    if (p == e || *p == '#')
        return perr(ps, line, "missing address after '%s'", action_name(action));

    const char *at = p;
    while (p < e && !is_delim(*p))
        p++;
    size_t an = (size_t)(p - at);
    const char *slash = memchr(at, '/', an);
    size_t addr_n = slash ? (size_t)(slash - at) : an;

    pc_addr_t a;
    const char *why = "";
    if (addr_parse(at, addr_n, &a, &why) != 0) {
        return perr(ps, line, "bad %s address '%s': %s", memchr(at, ':', addr_n) ? "IPv6" : "IPv4",
                    show(q, sizeof q, at, addr_n), why);
    }
    unsigned maxlen = addr_bits(&a), len = maxlen;
    if (slash) {
        const char *lt = slash + 1;
        size_t ln = (size_t)(at + an - lt);
        if (ln == 0) return perr(ps, line, "missing prefix length after '/'");
        for (size_t i = 0; i < ln; i++)
            if (lt[i] < '0' || lt[i] > '9')
                return perr(ps, line, "bad prefix length '%s'", show(q, sizeof q, lt, ln));
        if (ln > 1 && lt[0] == '0')
            return perr(ps, line, "prefix length '%s' has a leading zero",
                        show(q, sizeof q, lt, ln));
        if (ln > 3)
            return perr(ps, line, "prefix length %s out of range for IPv%d (0-%u)",
                        show(q, sizeof q, lt, ln), a.family, maxlen);
        len = 0;
        for (size_t i = 0; i < ln; i++)
            len = len * 10 + (unsigned)(lt[i] - '0');
        if (len > maxlen)
            return perr(ps, line, "prefix length %u out of range for IPv%d (0-%u)", len, a.family,
                        maxlen);
    }
    if (a.family == 6 && len >= 96 && addr_is_v4mapped(&a)) {
        pc_addr_t v4 = a;
        char t[PC_ADDR_STRLEN];
        addr_normalize(&v4);
        addr_mask(&v4, len - 96);
        addr_format(&v4, t, sizeof t);
        return perr(ps, line,
                    "IPv4-mapped IPv6 prefix never matches (mapped peers are matched as IPv4): "
                    "write %s/%u",
                    t, len - 96);
    }
    if (addr_host_bits_set(&a, len)) {
        char t[PC_ADDR_STRLEN];
        pc_addr_t net = a;
        addr_mask(&net, len);
        addr_format(&net, t, sizeof t);
        return perr(ps, line, "host bits set beyond /%u in '%s' (the network is %s/%u)", len,
                    show(q, sizeof q, at, an), t, len);
    }
    while (p < e && is_ws(*p))
        p++;
    if (p < e && *p != '#') {
        const char *g = p;
        while (p < e && !is_delim(*p))
            p++;
        return perr(ps, line, "unexpected '%s' after the address",
                    show(q, sizeof q, g, (size_t)(p - g)));
    }
    return add_rule(ps, line, action, &a, len);
}

/* ------------------------------------------------------------------------ */
/* Compilation                                                              */
/* ------------------------------------------------------------------------ */

#define IDX_BITS 26
#define IDX_MASK ((1ull << IDX_BITS) - 1)

/* Stable LSD radix sort of a[0..n) on bits [lo_bit, 64). */
static int radix_sort(uint64_t *a, size_t n, unsigned lo_bit)
{
    enum { DIGIT = 11, NB = 1 << DIGIT };
    uint64_t *tmp = pc__malloc(n * sizeof *tmp);
    size_t *cnt = pc__malloc(NB * sizeof *cnt);
    if (!tmp || !cnt) {
        pc__free(tmp);
        pc__free(cnt);
        return PC_ENOMEM;
    }
    uint64_t *src = a, *dst = tmp;
    for (unsigned sh = lo_bit; sh < 64; sh += DIGIT) {
        memset(cnt, 0, NB * sizeof *cnt);
        for (size_t i = 0; i < n; i++)
            cnt[(src[i] >> sh) & (NB - 1)]++;
        if (n > 0 && cnt[(src[0] >> sh) & (NB - 1)] == n) continue; /* one bucket: no-op */
        size_t sum = 0;
        for (size_t b = 0; b < NB; b++) {
            size_t c = cnt[b];
            cnt[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[cnt[(src[i] >> sh) & (NB - 1)]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
    pc__free(tmp);
    pc__free(cnt);
    return 0;
}

typedef struct v6rec_s {
    uint64_t hi, lo;
    uint32_t idx;
    uint8_t len;
} v6rec_t;

static int v6rec_cmp(const void *x, const void *y)
{
    const v6rec_t *a = x, *b = y;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static void rule_addr(const pc_rules_t *r, uint32_t i, pc_addr_t *a)
{
    const rule_t *ru = &r->rule[i];
    if (ru->family == 4)
        addr_set_v4(a, ru->a4);
    else {
        a->family = 6;
        memcpy(a->b, r->v6[ru->a4], 16);
    }
}

static void free_set(pc_rules_t *r)
{
    lpm_free(&r->t4);
    lpm_free(&r->t6);
    pc__free(r->rule);
    pc__free(r->v6);
    pc__free((void *)r->hits);
    pc__free(r->order);
    pc__free(r);
}

/* Sort, refuse duplicates, build the tables. Takes the parsed arrays. */
static int compile(parse_t *ps, pc_rules_t **out)
{
    int rc = PC_ENOMEM;
    uint64_t *k4 = NULL;
    v6rec_t *k6 = NULL;
    lpm_prefix_t *pf = NULL;
    pc_rules_t *r = pc__calloc(1, sizeof *r);
    if (!r) return PC_ENOMEM;
    r->n = ps->n;
    r->n4 = ps->n4;
    r->n6 = ps->n6;
    r->rule = ps->rule;
    r->v6 = ps->v6;
    ps->rule = NULL;
    ps->v6 = NULL;
    if (r->n > 0 && r->n < ps->cap) { /* comment lines reserved room too */
        rule_t *shrunk = pc__realloc(r->rule, r->n * sizeof *r->rule);
        if (shrunk) r->rule = shrunk;
    }
    r->t4.family = 4;
    r->t6.family = 6;

    r->order = pc__malloc((r->n ? r->n : 1) * sizeof *r->order);
    r->hits = pc__calloc(r->n ? r->n : 1, sizeof *r->hits);
    k4 = pc__malloc((r->n4 ? r->n4 : 1) * sizeof *k4);
    k6 = pc__malloc((r->n6 ? r->n6 : 1) * sizeof *k6);
    if (!r->order || !r->hits || !k4 || !k6) goto fail;

    size_t i4 = 0, i6 = 0;
    for (size_t i = 0; i < r->n; i++) {
        const rule_t *ru = &r->rule[i];
        if (ru->family == 4) {
            k4[i4++] = (uint64_t)ru->a4 << 32 | (uint64_t)ru->len << IDX_BITS | i;
        } else {
            v6rec_t *v = &k6[i6++];
            v->hi = addr_load_be64(r->v6[ru->a4]);
            v->lo = addr_load_be64(r->v6[ru->a4] + 8);
            v->idx = (uint32_t)i;
            v->len = ru->len;
        }
    }
    if ((rc = radix_sort(k4, r->n4, IDX_BITS)) != 0) goto fail;
    qsort(k6, r->n6, sizeof *k6, v6rec_cmp);

    /* Duplicates: report the one on the earliest line. Sorting is stable in
     * line order, so each group's first member is its earliest line. */
    size_t dup = SIZE_MAX, dup_of = 0, lead = 0;
    for (size_t i = 0; i < r->n4; i++) {
        if (i > 0 && (k4[i] >> IDX_BITS) == (k4[i - 1] >> IDX_BITS)) {
            size_t later = (size_t)(k4[i] & IDX_MASK);
            if (later < dup) {
                dup = later;
                dup_of = lead;
            }
        } else {
            lead = (size_t)(k4[i] & IDX_MASK);
        }
    }
    for (size_t i = 0; i < r->n6; i++) {
        if (i > 0 && k6[i].hi == k6[i - 1].hi && k6[i].lo == k6[i - 1].lo &&
            k6[i].len == k6[i - 1].len) {
            if (k6[i].idx < dup) {
                dup = k6[i].idx;
                dup_of = lead;
            }
        } else {
            lead = k6[i].idx;
        }
    }
    if (dup != SIZE_MAX) {
        pc_addr_t a;
        char t[PC_ADDR_STRLEN];
        rule_addr(r, (uint32_t)dup, &a);
        addr_format(&a, t, sizeof t);
        rc = perr(ps, r->rule[dup].line, "duplicate prefix %s/%u (already at line %u)", t,
                  r->rule[dup].len, r->rule[dup_of].line);
        goto fail;
    }

    size_t nmax = r->n4 > r->n6 ? r->n4 : r->n6;
    pf = pc__malloc((nmax ? nmax : 1) * sizeof *pf);
    if (!pf) {
        rc = PC_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < r->n4; i++) {
        uint32_t idx = (uint32_t)(k4[i] & IDX_MASK);
        r->order[i] = idx;
        pf[i].hi = (uint64_t)r->rule[idx].a4 << 32;
        pf[i].lo = 0;
        pf[i].len = r->rule[idx].len;
        pf[i].value = idx + 1;
    }
    if ((rc = lpm_build(&r->t4, 4, pf, r->n4)) != 0) goto fail;
    for (size_t i = 0; i < r->n6; i++) {
        r->order[r->n4 + i] = k6[i].idx;
        pf[i].hi = k6[i].hi;
        pf[i].lo = k6[i].lo;
        pf[i].len = k6[i].len;
        pf[i].value = k6[i].idx + 1;
    }
    if ((rc = lpm_build(&r->t6, 6, pf, r->n6)) != 0) goto fail;

    pc__free(k4);
    pc__free(k6);
    pc__free(pf);
    *out = r;
    return 0;
fail:
    pc__free(k4);
    pc__free(k6);
    pc__free(pf);
    free_set(r);
    return rc;
}

int pc_rules_load_string(const char *text, size_t len, const char *name, pc_rules_t **out,
                         char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) return PC_EINVAL;
    *out = NULL;
    if (!text && len) return PC_EINVAL;

    parse_t ps;
    memset(&ps, 0, sizeof ps);
    ps.name = name ? name : "<string>";
    ps.err = err;
    ps.errlen = errlen;

    int rc = 0;
    unsigned line = 0;
    const char *p = text, *end = text ? text + len : text;

    /* At most one rule per line: size the rule array once. */
    size_t lines = 1;
    for (const char *q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
        lines++;
    if (lines > RULES_MAX) lines = RULES_MAX;
    ps.rule = pc__malloc(lines * sizeof *ps.rule);
    if (ps.rule)
        ps.cap = lines;
    else
        rc = PC_ENOMEM;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        if ((rc = parse_line(&ps, line, p, e)) != 0) break;
        p = nl ? nl + 1 : end;
    }
    if (rc == 0) rc = compile(&ps, out);
    if (rc == PC_ENOMEM) set_err(err, errlen, "%s: out of memory", ps.name);
    pc__free(ps.rule);
    pc__free(ps.v6);
    if (rc == 0) pc__alloc_pin();
    return rc;
}

void pc_rules_free(pc_rules_t *r)
{
    if (!r) return;
    free_set(r);
    pc__alloc_unpin();
}

size_t pc_rules_count(const pc_rules_t *r)
{
    return r ? r->n : 0;
}

int pc_rules_get(const pc_rules_t *r, size_t i, pc_rule_info_t *out)
{
    if (!r || !out || i >= r->n) return PC_EINVAL;
    const rule_t *ru = &r->rule[i];
    pc_addr_t a;
    char t[PC_ADDR_STRLEN];
    rule_addr(r, (uint32_t)i, &a);
    addr_format(&a, t, sizeof t);
    memset(out, 0, sizeof *out);
    snprintf(out->text, sizeof out->text, "%s %s/%u", action_name(ru->action), t, ru->len);
    out->action = (pc_rule_action_t)ru->action;
    out->family = ru->family;
    out->prefix_len = ru->len;
    out->line = ru->line;
    out->hits = atomic_load_explicit(&r->hits[i], memory_order_relaxed);
    return 0;
}

static int match_addr(const pc_rules_t *r, const pc_addr_t *a, pc_rule_action_t *action,
                      size_t *rule_index)
{
    if (!r) return 0;
    uint32_t i = rules_lookup(r, a);
    if (i == RULE_NONE) return 0;
    if (action) *action = rules_action(r, i);
    if (rule_index) *rule_index = i;
    return 1;
}

int pc_rules_match(const pc_rules_t *r, const struct sockaddr *sa, pc_rule_action_t *action,
                   size_t *rule_index)
{
    pc_addr_t a;
    if (addr_from_sockaddr(sa, &a) != 0) return PC_EINVAL;
    return match_addr(r, &a, action, rule_index);
}

int pc_rules_match_text(const pc_rules_t *r, const char *text, pc_rule_action_t *action,
                        size_t *rule_index)
{
    pc_addr_t a;
    if (!text || addr_parse(text, strlen(text), &a, NULL) != 0) return PC_EINVAL;
    addr_normalize(&a);
    return match_addr(r, &a, action, rule_index);
}

/* ------------------------------------------------------------------------ */
/* Internal                                                                 */
/* ------------------------------------------------------------------------ */

/* Order of the `order` arrays: family, address, length. */
static int rule_cmp(const pc_rules_t *ra, uint32_t i, const pc_rules_t *rb, uint32_t j)
{
    const rule_t *a = &ra->rule[i], *b = &rb->rule[j];
    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    int c;
    if (a->family == 4)
        c = a->a4 < b->a4 ? -1 : a->a4 > b->a4;
    else
        c = memcmp(ra->v6[a->a4], rb->v6[b->a4], 16);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

void rules_carry_hits(const pc_rules_t *from, pc_rules_t *to)
{
    if (!from || !to) return;
    size_t i = 0, j = 0;
    while (i < from->n && j < to->n) {
        uint32_t a = from->order[i], b = to->order[j];
        int c = rule_cmp(from, a, to, b);
        if (c < 0) {
            i++;
        } else if (c > 0) {
            j++;
        } else {
            if (from->rule[a].action == to->rule[b].action) {
                uint64_t h = atomic_load_explicit(&from->hits[a], memory_order_relaxed);
                if (h) atomic_fetch_add_explicit(&to->hits[b], h, memory_order_relaxed);
            }
            i++;
            j++;
        }
    }
}

size_t rules_top(const pc_rules_t *r, pc_rule_info_t *out, size_t max)
{
    if (!r || !out || max == 0) return 0;
    /* out[].hits and out[].line carry (hits, index) while selecting */
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        uint64_t h = atomic_load_explicit(&r->hits[i], memory_order_relaxed);
        if (h == 0 || (k == max && out[k - 1].hits >= h)) continue;
        size_t j = k < max ? k++ : max - 1;
        while (j > 0 && out[j - 1].hits < h) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].hits = h;
        out[j].line = (unsigned)i;
    }
    for (size_t j = 0; j < k; j++) {
        uint64_t h = out[j].hits;
        pc_rules_get(r, out[j].line, &out[j]);
        out[j].hits = h; /* the value ranked, even if it moved on since */
    }
    return k;
}

size_t rules_table_bytes(const pc_rules_t *r)
{
    return r ? lpm_bytes(&r->t4) + lpm_bytes(&r->t6) : 0;
}

size_t rules_total_bytes(const pc_rules_t *r)
{
    if (!r) return 0;
    return sizeof *r + rules_table_bytes(r) + r->n * (sizeof *r->rule + sizeof *r->hits) +
           r->n * sizeof *r->order + r->n6 * sizeof *r->v6;
}
