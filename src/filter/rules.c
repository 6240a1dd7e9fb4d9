/* SPDX-License-Identifier: MIT */
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
    const char *name; /* of the source being parsed */
    char *err;
    size_t errlen;
    uint8_t src; /* its index */
    rule_t *rule;
    size_t n, cap;
    uint8_t (*v6)[16];
    size_t n4, n6, cap6;
} parse_t;

/* A builder is the parse state plus the names of its sources, kept for the
 * messages that name two places (duplicates, conflicts). */
struct pc_rules_builder_s {
    parse_t ps;
    char *names[RULES_MAX_SOURCES];
    size_t nnames;
};

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int is_delim(char c)
{
    return is_ws(c) || c == '#';
}

/* Plain lists also take ';' as a comment (Spamhaus DROP: "1.2.3.0/24 ; SBL1"). */
static int is_list_delim(char c)
{
    return is_delim(c) || c == ';';
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

static int add_rule(parse_t *ps, unsigned line, pc_rule_action_t action, const addr_t *a,
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
    r->src = ps->src;
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

/* The prefix "ADDR[/LEN]" in [at, at + an): checked and stored in *a, *len. */
static int parse_prefix(parse_t *ps, unsigned line, const char *at, size_t an, addr_t *out,
                        unsigned *out_len)
{
    char q[48];
    const char *slash = memchr(at, '/', an);
    size_t addr_n = slash ? (size_t)(slash - at) : an;

    addr_t a;
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
        addr_t v4 = a;
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
        addr_t net = a;
        addr_mask(&net, len);
        addr_format(&net, t, sizeof t);
        return perr(ps, line, "host bits set beyond /%u in '%s' (the network is %s/%u)", len,
                    show(q, sizeof q, at, an), t, len);
    }
    *out = a;
    *out_len = len;
    return 0;
}

/* After the address: nothing, or a comment (delim tells which bytes end a token). */
static int parse_tail(parse_t *ps, unsigned line, const char *p, const char *e, int (*delim)(char))
{
    char q[48];
    while (p < e && is_ws(*p))
        p++;
    if (p < e && !delim(*p)) {
        const char *g = p;
        while (p < e && !delim(*p))
            p++;
        return perr(ps, line, "unexpected '%s' after the address",
                    show(q, sizeof q, g, (size_t)(p - g)));
    }
    return 0;
}

/* One line [p, e) of rule text, without its newline. */
static int parse_rule_line(parse_t *ps, unsigned line, const char *p, const char *e)
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
    addr_t a;
    unsigned len;
    int rc = parse_prefix(ps, line, at, (size_t)(p - at), &a, &len);
    if (rc == 0) rc = parse_tail(ps, line, p, e, is_delim);
    return rc ? rc : add_rule(ps, line, action, &a, len);
}

/* One line of a plain list: "ADDR[/LEN]", '#' and ';' comments. */
static int parse_list_line(parse_t *ps, unsigned line, const char *p, const char *e,
                           pc_rule_action_t action)
{
    while (p < e && is_ws(*p))
        p++;
    if (p == e || *p == '#' || *p == ';') return 0;
    const char *at = p;
    while (p < e && !is_list_delim(*p))
        p++;
    addr_t a;
    unsigned len;
    int rc = parse_prefix(ps, line, at, (size_t)(p - at), &a, &len);
    if (rc == 0) rc = parse_tail(ps, line, p, e, is_list_delim);
    return rc ? rc : add_rule(ps, line, action, &a, len);
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

static void rule_addr(const pc_rules_t *r, uint32_t i, addr_t *a)
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

/* "at line N" for the same source, "at NAME:N" for another one. */
static void other_place(const pc_rules_builder_t *b, const rule_t *here, const rule_t *there,
                        char *dst, size_t dn)
{
    if (here->src == there->src)
        set_err(dst, dn, "line %u", there->line);
    else
        set_err(dst, dn, "%s:%u", b->names[there->src], there->line);
}

/* Drop the rules marked dead from r->rule and the sort keys, renumbering the
 * survivors (their line order is kept). */
static int drop_dead(pc_rules_t *r, const uint8_t *dead, uint64_t *k4, v6rec_t *k6)
{
    uint32_t *renum = pc__malloc(r->n * sizeof *renum);
    if (!renum) return PC_ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++) {
        renum[i] = (uint32_t)w;
        if (!dead[i]) r->rule[w++] = r->rule[i];
    }
    size_t w4 = 0, w6 = 0;
    for (size_t i = 0; i < r->n4; i++) {
        size_t idx = (size_t)(k4[i] & IDX_MASK);
        if (!dead[idx]) k4[w4++] = (k4[i] & ~IDX_MASK) | renum[idx];
    }
    for (size_t i = 0; i < r->n6; i++) {
        if (dead[k6[i].idx]) continue;
        k6[w6] = k6[i];
        k6[w6++].idx = renum[k6[i].idx];
    }
    pc__free(renum);
    r->n = w;
    r->n4 = w4;
    r->n6 = w6;
    return 0;
}

/* One group of equal prefixes, members in load order (sorting is stable):
 * the first stays, later ones with its action are folded (counted), a later
 * one with the other action is a conflict. Keeps the earliest example of
 * each kind. */
typedef struct dups_s {
    uint8_t *dead; /* allocated at the first duplicate */
    size_t n, ex, ex_of, cf, cf_of;
} dups_t;

static int dup_member(dups_t *d, const pc_rules_t *r, size_t lead, size_t m)
{
    if (r->rule[m].action != r->rule[lead].action) {
        if (m < d->cf) {
            d->cf = m;
            d->cf_of = lead;
        }
        return 0;
    }
    if (!d->dead && !(d->dead = pc__calloc(r->n, 1))) return PC_ENOMEM;
    d->dead[m] = 1;
    d->n++;
    if (m < d->ex) {
        d->ex = m;
        d->ex_of = lead;
    }
    return 0;
}

/* Sort, fold duplicates, refuse conflicts, build the tables. Takes the
 * parsed arrays. */
static int compile(pc_rules_builder_t *bld, pc_rules_t **out, char *err, size_t errlen)
{
    parse_t *ps = &bld->ps;
    int rc = PC_ENOMEM;
    uint64_t *k4 = NULL;
    v6rec_t *k6 = NULL;
    lpm_prefix_t *pf = NULL;
    dups_t d = {NULL, 0, SIZE_MAX, 0, SIZE_MAX, 0};
    pc_rules_t *r = pc__calloc(1, sizeof *r);
    if (!r) return PC_ENOMEM;
    r->n = ps->n;
    r->n4 = ps->n4;
    r->n6 = ps->n6;
    r->rule = ps->rule;
    r->v6 = ps->v6;
    ps->rule = NULL;
    ps->v6 = NULL;
    ps->n = ps->n4 = ps->n6 = ps->cap = ps->cap6 = 0;
    r->t4.family = 4;
    r->t6.family = 6;

    k4 = pc__malloc((r->n4 ? r->n4 : 1) * sizeof *k4);
    k6 = pc__malloc((r->n6 ? r->n6 : 1) * sizeof *k6);
    if (!k4 || !k6) goto fail;

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

    size_t lead = 0;
    for (size_t i = 0; i < r->n4 && rc == 0; i++) {
        if (i > 0 && (k4[i] >> IDX_BITS) == (k4[i - 1] >> IDX_BITS))
            rc = dup_member(&d, r, lead, (size_t)(k4[i] & IDX_MASK));
        else
            lead = (size_t)(k4[i] & IDX_MASK);
    }
    for (size_t i = 0; i < r->n6 && rc == 0; i++) {
        if (i > 0 && k6[i].hi == k6[i - 1].hi && k6[i].lo == k6[i - 1].lo &&
            k6[i].len == k6[i - 1].len)
            rc = dup_member(&d, r, lead, k6[i].idx);
        else
            lead = k6[i].idx;
    }
    if (rc) goto fail;
    if (d.cf != SIZE_MAX || d.n) {
        size_t m = d.cf != SIZE_MAX ? d.cf : d.ex, of = d.cf != SIZE_MAX ? d.cf_of : d.ex_of;
        const rule_t *rm = &r->rule[m], *ro = &r->rule[of];
        addr_t a;
        char t[PC_ADDR_STRLEN], at[200];
        rule_addr(r, (uint32_t)m, &a);
        addr_format(&a, t, sizeof t);
        other_place(bld, rm, ro, at, sizeof at);
        if (d.cf != SIZE_MAX) {
            set_err(err, errlen, "%s:%u: '%s %s/%u' conflicts with '%s %s/%u' at %s",
                    bld->names[rm->src], rm->line, action_name(rm->action), t, rm->len,
                    action_name(ro->action), t, ro->len, at);
            rc = PC_EPARSE;
            goto fail;
        }
        r->ndup = d.n;
        r->dup_line = rm->line;
        r->dup_first_line = ro->line;
        set_err(r->dup_msg, sizeof r->dup_msg,
                "%zu duplicate rule%s ignored (same prefix, same action); first: %s:%u: %s "
                "%s/%u, already at %s",
                d.n, d.n == 1 ? "" : "s", bld->names[rm->src], rm->line, action_name(rm->action), t,
                rm->len, at);
        if ((rc = drop_dead(r, d.dead, k4, k6)) != 0) goto fail;
    }
    if (r->n > 0) { /* comment lines and duplicates reserved room too */
        rule_t *shrunk = pc__realloc(r->rule, r->n * sizeof *r->rule);
        if (shrunk) r->rule = shrunk;
    }
    r->order = pc__malloc((r->n ? r->n : 1) * sizeof *r->order);
    r->hits = pc__calloc(r->n ? r->n : 1, sizeof *r->hits);
    if (!r->order || !r->hits) {
        rc = PC_ENOMEM;
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
    pc__free(d.dead);
    *out = r;
    return 0;
fail:
    pc__free(k4);
    pc__free(k6);
    pc__free(pf);
    pc__free(d.dead);
    free_set(r);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

int pc_rules_builder_new(pc_rules_builder_t **out)
{
    if (!out) return PC_EINVAL;
    pc_rules_builder_t *b = pc__calloc(1, sizeof *b);
    *out = b;
    if (!b) return PC_ENOMEM;
    pc__alloc_pin(); /* it holds allocations until freed */
    return 0;
}

void pc_rules_builder_free(pc_rules_builder_t *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nnames; i++)
        pc__free(b->names[i]);
    pc__free(b->ps.rule);
    pc__free(b->ps.v6);
    pc__free(b);
    pc__alloc_unpin();
}

static int add_text(pc_rules_builder_t *b, pc_rules_format_t fmt, const char *text, size_t len,
                    const char *name, char *err, size_t errlen)
{
    parse_t *ps = &b->ps;
    if (b->nnames == RULES_MAX_SOURCES) {
        set_err(err, errlen, "%s: too many sources in one rule set (at most %d)", name,
                RULES_MAX_SOURCES);
        return PC_EINVAL;
    }
    size_t nl = strlen(name) + 1;
    char *copy = pc__malloc(nl);
    if (!copy) return PC_ENOMEM;
    memcpy(copy, name, nl);

    /* At most one rule per line: size the rule array once per source. */
    size_t lines = 1;
    const char *p = text, *end = text ? text + len : text;
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3; /* UTF-8 byte-order mark */
    for (const char *q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
        lines++;
    size_t want = ps->n + lines;
    if (want > RULES_MAX) want = RULES_MAX;
    if (want > ps->cap) {
        rule_t *nr = pc__realloc(ps->rule, want * sizeof *nr);
        if (!nr) {
            pc__free(copy);
            return PC_ENOMEM;
        }
        ps->rule = nr;
        ps->cap = want;
    }

    size_t n0 = ps->n, n40 = ps->n4, n60 = ps->n6;
    ps->name = copy;
    ps->err = err;
    ps->errlen = errlen;
    ps->src = (uint8_t)b->nnames;
    int rc = 0;
    unsigned line = 0;
    while (rc == 0 && p < end) {
        const char *nlp = memchr(p, '\n', (size_t)(end - p));
        const char *e = nlp ? nlp : end;
        line++;
        if (fmt == PC_RULES_TEXT)
            rc = parse_rule_line(ps, line, p, e);
        else
            rc = parse_list_line(ps, line, p, e,
                                 fmt == PC_RULES_DENY_LIST ? PC_RULE_DENY : PC_RULE_ALLOW);
        p = nlp ? nlp + 1 : end;
    }
    ps->err = NULL;
    ps->errlen = 0;
    if (rc) { /* the builder is left as it was */
        ps->n = n0;
        ps->n4 = n40;
        ps->n6 = n60;
        pc__free(copy);
        return rc;
    }
    b->names[b->nnames++] = copy;
    return 0;
}

int pc_rules_builder_add_string(pc_rules_builder_t *b, pc_rules_format_t fmt, const char *text,
                                size_t len, const char *name, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!name) name = "<string>";
    if (!b || (!text && len) ||
        (fmt != PC_RULES_TEXT && fmt != PC_RULES_DENY_LIST && fmt != PC_RULES_ALLOW_LIST))
        return PC_EINVAL;
    int rc = add_text(b, fmt, text, len, name, err, errlen);
    if (rc == PC_ENOMEM) set_err(err, errlen, "%s: out of memory", name);
    return rc;
}

int pc_rules_builder_finish(pc_rules_builder_t *b, pc_rules_t **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (out) *out = NULL;
    if (!b || !out) {
        pc_rules_builder_free(b);
        return PC_EINVAL;
    }
    int rc = compile(b, out, err, errlen);
    if (rc == PC_ENOMEM)
        set_err(err, errlen, "%s: out of memory", b->nnames == 1 ? b->names[0] : "rule set");
    if (rc == 0) pc__alloc_pin(); /* the set's own pin */
    pc_rules_builder_free(b);
    return rc;
}

int pc_rules_load_string(const char *text, size_t len, const char *name, pc_rules_t **out,
                         char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) return PC_EINVAL;
    *out = NULL;
    if (!text && len) return PC_EINVAL;
    pc_rules_builder_t *b;
    int rc = pc_rules_builder_new(&b);
    if (rc) {
        set_err(err, errlen, "%s: out of memory", name ? name : "<string>");
        return rc;
    }
    rc = pc_rules_builder_add_string(b, PC_RULES_TEXT, text, len, name, err, errlen);
    if (rc) {
        pc_rules_builder_free(b);
        return rc;
    }
    return pc_rules_builder_finish(b, out, err, errlen);
}

size_t pc_rules_duplicates(const pc_rules_t *r, unsigned *dup_line, unsigned *first_line, char *msg,
                           size_t msglen)
{
    if (msg && msglen) snprintf(msg, msglen, "%s", r ? r->dup_msg : "");
    if (!r || r->ndup == 0) return 0;
    if (dup_line) *dup_line = r->dup_line;
    if (first_line) *first_line = r->dup_first_line;
    return r->ndup;
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
    addr_t a;
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

static int match_addr(const pc_rules_t *r, const addr_t *a, pc_rule_action_t *action,
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
    addr_t a;
    if (addr_from_sockaddr(sa, &a) != 0) return PC_EINVAL;
    return match_addr(r, &a, action, rule_index);
}

int pc_rules_match_text(const pc_rules_t *r, const char *text, pc_rule_action_t *action,
                        size_t *rule_index)
{
    addr_t a;
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
