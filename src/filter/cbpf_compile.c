/* SPDX-License-Identifier: MIT */
/* Rule set -> classic BPF listener filter (see cbpf_compile.h for the
 * program's shape). */
#include "filter/cbpf_compile.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

typedef struct u128_s {
    uint64_t hi, lo;
} u128_t;

/* The disjoint ranges of one family: range i is [start[i], start[i + 1]),
 * the last one reaching the top of the address space; start[0] is 0 and
 * neighbours differ in verdict. */
typedef struct tree_s {
    u128_t *start;
    uint8_t *deny;
    size_t m;
    int v6;
} tree_t;

typedef struct emit_s {
    cbpf_insn_t *insn;
    size_t pos;
} emit_t;

static int u128_cmp(const void *pa, const void *pb)
{
    const u128_t *a = pa, *b = pb;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
    return 0;
}

/* The first address after the prefix (start, len) of a bits-wide space;
 * 0 when it would be the top of the space (2^bits). */
static int prefix_end(u128_t start, unsigned len, unsigned bits, u128_t *end)
{
    if (len == 0) return 0;
    unsigned shift = bits - len; /* the block is 2^shift addresses */
    *end = start;
    if (bits == 32) {
        end->lo += (uint64_t)1 << shift;
        return end->lo < ((uint64_t)1 << 32);
    }
    if (shift >= 64) {
        end->hi += (uint64_t)1 << (shift - 64);
        return end->hi != 0;
    }
    end->lo += (uint64_t)1 << shift;
    if (end->lo == 0) {
        end->hi++;
        return end->hi != 0;
    }
    return 1;
}

static void tree_free(tree_t *t)
{
    pc__free(t->start);
    pc__free(t->deny);
    t->start = NULL;
    t->deny = NULL;
}

/* Resolve the rules of one family into merged ranges: between two
 * consecutive prefix boundaries the longest match is the same everywhere, so
 * one lookup at each boundary gives the verdict of the piece after it. */
static int tree_build(const pc_rules_t *r, int v6, tree_t *t)
{
    memset(t, 0, sizeof *t);
    t->v6 = v6;
    size_t n = r ? (v6 ? r->n6 : r->n4) : 0;
    t->start = pc__malloc((2 * n + 1) * sizeof *t->start);
    t->deny = pc__malloc(2 * n + 1);
    if (!t->start || !t->deny) {
        tree_free(t);
        return PC_ENOMEM;
    }
    size_t np = 0;
    t->start[np++] = (u128_t){0, 0};
    for (size_t i = 0; r && i < r->n; i++) {
        const rule_t *ru = &r->rule[i];
        if ((ru->family == 6) != v6) continue;
        u128_t s;
        if (v6) {
            s.hi = addr_load_be64(r->v6[ru->a4]);
            s.lo = addr_load_be64(r->v6[ru->a4] + 8);
        } else {
            s.hi = 0;
            s.lo = ru->a4;
        }
        t->start[np++] = s;
        if (prefix_end(s, ru->len, v6 ? 128 : 32, &s)) t->start[np++] = s;
    }
    qsort(t->start, np, sizeof *t->start, u128_cmp);
    size_t m = 0;
    for (size_t i = 0; i < np; i++) {
        if (i > 0 && u128_cmp(&t->start[i], &t->start[i - 1]) == 0) continue;
        int deny = 0;
        if (n > 0) {
            addr_t a;
            if (v6)
                addr_set_v6(&a, t->start[i].hi, t->start[i].lo);
            else
                addr_set_v4(&a, (uint32_t)t->start[i].lo);
            uint32_t ri = rules_lookup(r, &a);
            deny = ri != RULE_NONE && rules_action(r, ri) == PC_RULE_DENY;
        }
        if (m > 0 && t->deny[m - 1] == deny) continue; /* merge with the neighbour */
        t->start[m] = t->start[i];
        t->deny[m] = (uint8_t)deny;
        m++;
    }
    t->m = m;
    return 0;
}

/* 32-bit words of an IPv6 range start compared (trailing zero words are not:
 * x >= K is decided by the words before them). At least 1. */
static unsigned start_words(const tree_t *t, size_t i)
{
    if (!t->v6) return 1;
    const u128_t *s = &t->start[i];
    if ((uint32_t)s->lo) return 4;
    if (s->lo) return 3;
    if ((uint32_t)s->hi) return 2;
    return 1;
}

static uint32_t start_word(const tree_t *t, size_t i, unsigned w)
{
    const u128_t *s = &t->start[i];
    if (!t->v6) return (uint32_t)s->lo;
    uint64_t half = w < 2 ? s->hi : s->lo;
    return (w & 1) ? (uint32_t)half : (uint32_t)(half >> 32);
}

/* The comparison "address >= start[i]": IPv4 one jge (the address stays in
 * A); IPv6 per word a load, then jgt/jeq, the last word a jge. */
static size_t block_size(const tree_t *t, size_t i)
{
    return t->v6 ? 3 * (size_t)start_words(t, i) - 1 : 1;
}

/* Offset in the block of its first jump to the "true" side. */
static size_t block_first_true(const tree_t *t)
{
    return t->v6 ? 1 : 0;
}

static size_t node_mid(size_t lo, size_t hi)
{
    return lo + (hi - lo + 1) / 2;
}

/* Comparison instructions of the subtree over ranges lo..hi, leaves not
 * counted (a region jumps to two shared returns instead). */
static size_t cmp_size(const tree_t *t, size_t lo, size_t hi)
{
    if (lo == hi) return 0;
    size_t mid = node_mid(lo, hi);
    return block_size(t, mid) + cmp_size(t, lo, mid - 1) + cmp_size(t, mid, hi);
}

/* A subtree whose comparisons and two returns fit in a conditional jump's
 * reach is a region: its leaves are jumps to the region's "ret pass" and
 * "ret drop" at its end. */
static int is_region(const tree_t *t, size_t lo, size_t hi, size_t *size)
{
    *size = cmp_size(t, lo, hi) + 2;
    return *size <= 255;
}

/* Instructions of the subtree deciding among ranges lo..hi. */
static size_t node_size(const tree_t *t, size_t lo, size_t hi)
{
    if (lo == hi) return 1;
    size_t r;
    if (is_region(t, lo, hi, &r)) return r;
    size_t mid = node_mid(lo, hi);
    size_t left = node_size(t, lo, mid - 1);
    size_t b = block_size(t, mid);
    size_t tramp = b - block_first_true(t) - 1 + left > 255;
    return b + tramp + left + node_size(t, mid, hi);
}

static void put(emit_t *e, uint16_t code, size_t jt, size_t jf, uint32_t k)
{
    cbpf_insn_t *in = &e->insn[e->pos++];
    in->code = code;
    in->jt = (uint8_t)jt;
    in->jf = (uint8_t)jf;
    in->k = k;
}

/* Jump offset from the instruction about to be written to target. */
static size_t rel(const emit_t *e, size_t target)
{
    return target - e->pos - 1;
}

/* "address >= start[mid]": to ttarget if so, else to ftarget. */
static void block_emit(const tree_t *t, emit_t *e, size_t mid, size_t ttarget, size_t ftarget)
{
    unsigned nw = start_words(t, mid);
    for (unsigned w = 0; w < nw; w++) {
        uint32_t k = start_word(t, mid, w);
        if (t->v6) put(e, CBPF_LD_W_ABS, 0, 0, (uint32_t)(CBPF_NET_OFF + 8 + 4 * (int)w));
        if (w + 1 < nw) {
            put(e, CBPF_JGT_K, rel(e, ttarget), 0, k);
            put(e, CBPF_JEQ_K, 0, rel(e, ftarget), k);
        } else {
            put(e, CBPF_JGE_K, rel(e, ttarget), rel(e, ftarget), k);
        }
    }
}

/* The comparisons of a region: [compare][left][right], a leaf child being
 * the region's return for its verdict. */
static void region_emit(const tree_t *t, emit_t *e, size_t lo, size_t hi, size_t ret_pass)
{
    if (lo == hi) return;
    size_t mid = node_mid(lo, hi);
    size_t base = e->pos, b = block_size(t, mid);
    size_t lt = lo == mid - 1 ? ret_pass + t->deny[lo] : base + b;
    size_t rt = mid == hi ? ret_pass + t->deny[hi] : base + b + cmp_size(t, lo, mid - 1);
    block_emit(t, e, mid, rt, lt);
    region_emit(t, e, lo, mid - 1, ret_pass);
    region_emit(t, e, mid, hi, ret_pass);
}

/* Layout of a node: a region, or
 * [compare][ja right, if right is out of reach][left][right]. */
static void node_emit(const tree_t *t, emit_t *e, size_t lo, size_t hi)
{
    if (lo == hi) {
        put(e, CBPF_RET_K, 0, 0, t->deny[lo] ? 0 : CBPF_PASS);
        return;
    }
    size_t r;
    if (is_region(t, lo, hi, &r)) {
        size_t ret_pass = e->pos + r - 2; /* then ret drop */
        region_emit(t, e, lo, hi, ret_pass);
        put(e, CBPF_RET_K, 0, 0, CBPF_PASS);
        put(e, CBPF_RET_K, 0, 0, 0);
        return;
    }
    size_t mid = node_mid(lo, hi);
    size_t left = node_size(t, lo, mid - 1);
    size_t b = block_size(t, mid);
    size_t tramp = b - block_first_true(t) - 1 + left > 255;
    size_t base = e->pos;
    size_t lstart = base + b + tramp;
    block_emit(t, e, mid, tramp ? base + b : lstart + left, lstart);
    if (tramp) put(e, CBPF_JA, 0, 0, (uint32_t)left);
    node_emit(t, e, lo, mid - 1);
    node_emit(t, e, mid, hi);
}

/* A family's code: the address load (IPv4) and the tree, or one ret. */
static size_t tree_size(const tree_t *t)
{
    if (t->m == 1) return 1;
    return (t->v6 ? 0 : 1) + node_size(t, 0, t->m - 1);
}

static void tree_emit(const tree_t *t, emit_t *e)
{
    if (t->m > 1 && !t->v6) put(e, CBPF_LD_W_ABS, 0, 0, (uint32_t)(CBPF_NET_OFF + 12));
    node_emit(t, e, 0, t->m - 1);
}

/* A tree of m ranges needs a comparison per boundary between them, and
 * more: skip the exact count (O(m log m)) for sets far beyond the limit. */
static int hopeless(const tree_t *t)
{
    return t->m > CBPF_MAXINSNS;
}

int cbpf_compile(const pc_rules_t *rules, int family, int dual_stack, cbpf_prog_t *out)
{
    if (!out || (family != 4 && family != 6)) return PC_EINVAL;
    memset(out, 0, sizeof *out);
    int want4 = family == 4 || dual_stack, want6 = family == 6;
    tree_t t4 = {0}, t6 = {0};
    int rc = 0;
    if (want4) rc = tree_build(rules, 0, &t4);
    if (rc == 0 && want6) rc = tree_build(rules, 1, &t6);
    if (rc < 0) goto done;
    out->ranges4 = t4.m;
    out->ranges6 = t6.m;
    int deny4 = want4 && (t4.m > 1 || t4.deny[0]);
    int deny6 = want6 && (t6.m > 1 || t6.deny[0]);
    if (!deny4 && !deny6) { /* nothing to drop: one instruction */
        out->insn = pc__malloc(sizeof *out->insn);
        if (!out->insn) {
            rc = PC_ENOMEM;
            goto done;
        }
        out->len = 1;
        emit_t e = {out->insn, 0};
        put(&e, CBPF_RET_K, 0, 0, CBPF_PASS);
        goto done;
    }
    if ((want4 && hopeless(&t4)) || (want6 && hopeless(&t6))) {
        out->len = (want4 ? t4.m : 0) + (want6 ? t6.m : 0);
        out->len_at_least = 1;
        rc = PC_ENOBUFS;
        goto done;
    }
    size_t s4 = want4 ? tree_size(&t4) : 0, s6 = want6 ? tree_size(&t6) : 0;
    size_t head = 4; /* flags: ldb, jset ack, jset syn, ret pass */
    size_t tramp = 0;
    if (want4 && want6) {
        head += 2; /* ldb version, jge 0x60 */
        tramp = s4 > 255;
    }
    out->len = head + tramp + s4 + s6;
    if (out->len > CBPF_MAXINSNS) {
        rc = PC_ENOBUFS;
        goto done;
    }
    out->insn = pc__malloc(out->len * sizeof *out->insn);
    if (!out->insn) {
        rc = PC_ENOMEM;
        goto done;
    }
    emit_t e = {out->insn, 0};
    put(&e, CBPF_LD_B_ABS, 0, 0, 13); /* TCP flags */
    put(&e, CBPF_JSET_K, 1, 0, 0x10); /* ACK: pass */
    put(&e, CBPF_JSET_K, 1, 0, 0x02); /* SYN: judge; anything else: pass */
    put(&e, CBPF_RET_K, 0, 0, CBPF_PASS);
    if (want4 && want6) {
        put(&e, CBPF_LD_B_ABS, 0, 0, (uint32_t)CBPF_NET_OFF); /* version << 4 | IHL */
        if (tramp) {
            put(&e, CBPF_JGE_K, 0, 1, 0x60);
            put(&e, CBPF_JA, 0, 0, (uint32_t)s4);
        } else {
            put(&e, CBPF_JGE_K, s4, 0, 0x60);
        }
    }
    if (want4) tree_emit(&t4, &e);
    if (want6) tree_emit(&t6, &e);
done:
    tree_free(&t4);
    tree_free(&t6);
    if (rc < 0) {
        pc__free(out->insn);
        out->insn = NULL;
    }
    return rc;
}

void cbpf_prog_free(cbpf_prog_t *p)
{
    if (!p) return;
    pc__free(p->insn);
    p->insn = NULL;
    p->len = 0;
}
