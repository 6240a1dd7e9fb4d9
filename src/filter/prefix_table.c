/* SPDX-License-Identifier: MIT */
/* Longest-prefix-match tables: build and lookup (see prefix_table.h).
 *
 * Build: the sorted prefixes become the list of disjoint address intervals
 * with their longest-match value (a sweep with a stack of open prefixes,
 * merging neighbours with equal values: "leaf pushing"). The trie is then
 * cut from that list top-down: a span without an interval start inside is a
 * leaf, one with few is a range list, any other is a node whose 256 children
 * are built the same way. */
#include "filter/prefix_table.h"

#include <string.h>

#include "portcullis.h"
#include "core/alloc.h"
#include "core/vm.h"

/* Largest range list (intervals) before a span becomes a node, chosen with
 * pc-filter-bench (docs/filter.md). IPv4: 16 two-byte keys are half a cache
 * line; beyond that the binary search costs more than a node's popcount.
 * IPv6: 32 eight-byte keys (four lines) keep a sparse /16 in one list instead
 * of a node plus lists, which halves the table; a crowded span still becomes
 * nodes, so a search never spans more than 32 keys. 1 gives a pure multibit
 * trie, a huge value pure range buckets (for comparisons). */
#ifndef PC_LPM_RANGE_MAX4
#define PC_LPM_RANGE_MAX4 16
#endif
#ifndef PC_LPM_RANGE_MAX6
#define PC_LPM_RANGE_MAX6 32
#endif

/* Steps of a binary search that leave one of up to max entries, or 0 (a
 * loop until one is left) for the huge lists of comparison builds. A fixed
 * count never mispredicts the loop's exit, which would throw away the
 * following lookups' work the CPU has begun; a step with one entry left
 * compares in place and changes nothing. Measured in docs/filter.md. */
#define LPM_STEPS(max)  \
    ((max) <= 2     ? 1 \
     : (max) <= 4   ? 2 \
     : (max) <= 8   ? 3 \
     : (max) <= 16  ? 4 \
     : (max) <= 32  ? 5 \
     : (max) <= 64  ? 6 \
     : (max) <= 128 ? 7 \
                    : 0)
#define STEPS4 LPM_STEPS(PC_LPM_RANGE_MAX4)
#define STEPS6 LPM_STEPS(PC_LPM_RANGE_MAX6)
/* A search loop's condition after s steps, with len entries left. */
#define SEARCH_ON(steps, s, len) ((steps) ? (s) < (steps) : (len) > 1)

/* A slot's 32-bit entry: a leaf is the value itself (bit 31 clear). A node
 * or a range list has bit 31 set, bit 30 for a range list, bits 27-29 the
 * number of cache lines its block reaches past the line it starts in
 * (capped at 7; a range list's lookup prefetches them together with the
 * first line, so that a search touching several lines waits for one miss,
 * not a chain; a node's lookup asks for fixed lines, see node_child), and
 * the block's offset in the low 27 bits. */
#define E_NONLEAF     0x80000000u
#define E_RANGE       0x40000000u
#define E_LINES_SHIFT 27
#define E_LINES_MAX   7u
#define E_INDEX       0x07ffffffu

#if defined(__GNUC__)
#define LPM_INLINE static inline __attribute__((always_inline))
#else
#define LPM_INLINE static inline
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__POPCNT__)
/* Baseline x86-64 has no popcnt instruction: compile a second copy of the
 * lookups for CPUs that have it (all since 2008) and pick one at build. */
#define LPM_DISPATCH      1
#define LPM_TARGET_POPCNT __attribute__((target("popcnt")))
#else
#define LPM_DISPATCH 0
#endif

/* ------------------------------------------------------------------------ */
/* 128-bit helpers                                                          */
/* ------------------------------------------------------------------------ */

typedef struct u128_s {
    uint64_t hi, lo;
} u128;

static inline int u_lt(u128 a, u128 b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}
static inline int u_eq(u128 a, u128 b)
{
    return a.hi == b.hi && a.lo == b.lo;
}
/* Low n bits set, 0 <= n <= 128. */
static inline u128 u_ones(unsigned n)
{
    u128 r;
    if (n == 0) {
        r.hi = r.lo = 0;
    } else if (n < 64) {
        r.hi = 0;
        r.lo = (1ull << n) - 1;
    } else if (n < 128) {
        r.lo = ~0ull;
        r.hi = n == 64 ? 0 : (1ull << (n - 64)) - 1;
    } else {
        r.hi = r.lo = ~0ull;
    }
    return r;
}
/* a + 2^n (0 <= n < 128); *overflow set when it wraps past 2^128. */
static inline u128 u_add_pow2(u128 a, unsigned n, int *overflow)
{
    u128 r = a;
    if (n < 64) {
        r.lo = a.lo + (1ull << n);
        uint64_t carry = r.lo < a.lo;
        r.hi = a.hi + carry;
        *overflow = carry && r.hi == 0;
    } else {
        r.hi = a.hi + (1ull << (n - 64));
        *overflow = r.hi < a.hi;
    }
    return r;
}

LPM_INLINE unsigned popc_portable(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct builder_s {
    lpm_t *t;
    /* intervals: start (bhi, blo) and value bv, ascending, first start 0 */
    uint64_t *bhi, *blo;
    uint32_t *bv;
    size_t nb;
    size_t range_max;
    int need_lo;
    int err;
    size_t cap_nodes, cap_ranges;
} builder_t;

static void emit(builder_t *b, u128 at, uint32_t v)
{
    if (b->nb > 0 && b->bhi[b->nb - 1] == at.hi && b->blo[b->nb - 1] == at.lo) b->nb--;
    if (b->nb > 0 && b->bv[b->nb - 1] == v) return;
    b->bhi[b->nb] = at.hi;
    b->blo[b->nb] = at.lo;
    b->bv[b->nb] = v;
    b->nb++;
}

/* Sorted prefixes -> disjoint intervals with longest-match values. */
static int make_intervals(builder_t *b, int family, const lpm_prefix_t *p, size_t n)
{
    size_t cap = 2 * n + 2;
    b->bhi = pc__malloc(cap * sizeof *b->bhi);
    b->blo = pc__malloc(cap * sizeof *b->blo);
    b->bv = pc__malloc(cap * sizeof *b->bv);
    if (!b->bhi || !b->blo || !b->bv) return PC_ENOMEM;

    struct {
        u128 end;
        uint32_t v;
    } st[130];
    int sp = 0;
    unsigned maxlen = family == 4 ? 32 : 128;
    u128 zero = {0, 0};
    st[0].end = u_ones(128);
    st[0].v = LPM_NONE;
    b->nb = 0;
    emit(b, zero, LPM_NONE);
    for (size_t i = 0; i < n; i++) {
        u128 s = {p[i].hi, p[i].lo};
        unsigned len = p[i].len;
        if (len > maxlen || p[i].value == LPM_NONE || p[i].value > LPM_MAX_VALUE) return PC_EINVAL;
        u128 host = u_ones(128 - len);
        if ((s.hi & host.hi) || (s.lo & host.lo)) return PC_EINVAL;
        if (family == 4 && ((s.hi & 0xffffffffu) || s.lo)) return PC_EINVAL;
        if (i > 0) {
            u128 q = {p[i - 1].hi, p[i - 1].lo};
            if (u_lt(s, q) || (u_eq(s, q) && len <= p[i - 1].len)) return PC_EINVAL;
        }
        u128 e = {s.hi | host.hi, s.lo | host.lo};
        while (u_lt(st[sp].end, s)) {
            int of;
            u128 after = u_add_pow2(st[sp].end, 0, &of);
            sp--;
            emit(b, after, st[sp].v);
        }
        sp++;
        st[sp].end = e;
        st[sp].v = p[i].value;
        emit(b, s, p[i].value);
    }
    while (sp > 0) {
        int of;
        u128 after = u_add_pow2(st[sp].end, 0, &of);
        sp--;
        if (!of) emit(b, after, st[sp].v);
    }
    return 0;
}

/* Lines past the first that a block at byte offset o of bytes bytes
 * reaches, as an entry's hint (blocks are laid out from 64-byte aligned
 * bases once built: see move_to_huge_block). */
static uint32_t lines_hint(size_t o, size_t bytes)
{
    size_t extra = ((o + bytes - 1) >> 6) - (o >> 6);
    return (uint32_t)(extra < E_LINES_MAX ? extra : E_LINES_MAX) << E_LINES_SHIFT;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    void *np = pc__realloc(*p, nc * elem);
    if (!np) return PC_ENOMEM;
    *p = np;
    *cap = nc;
    return 0;
}

/* Bytes of a node block with runs run entries: the 32-byte bitmap, the
 * runs counted before each bitmap word (4 bytes), the runs; 8-byte aligned. */
static size_t node_block_bytes(size_t runs)
{
    return (36 + 4 * runs + 7) & ~(size_t)7;
}

/* Bytes of a range list block of m entries. */
static size_t range_block_bytes(const lpm_t *t, int need_lo, size_t m)
{
    if (t->family == 4) return ((2 * m + 3) & ~(size_t)3) + 4 * m;
    return 8 * m * (need_lo ? 2 : 1) + ((4 * m + 7) & ~(size_t)7);
}

static uint32_t make_range(builder_t *b, size_t j, size_t last)
{
    lpm_t *t = b->t;
    size_t m = last - j + 1, unit = t->family == 4 ? 4 : 8;
    size_t o = t->ranges_bytes, need = o + range_block_bytes(t, b->need_lo, m);
    if (o / unit > E_INDEX || grow((void **)&t->ranges, &b->cap_ranges, need, 1) != 0) {
        b->err = PC_ENOMEM;
        return LPM_NONE;
    }
    /* The first start equals the span start and is never compared: its key
     * slot holds the number of starts that follow. */
    unsigned char *blk = t->ranges + o;
    uint32_t *val;
    if (t->family == 4) {
        uint16_t *k = (uint16_t *)(void *)blk;
        k[0] = (uint16_t)(m - 1);
        for (size_t i = 1; i < m; i++)
            k[i] = (uint16_t)(b->bhi[j + i] >> 32);
        if (m & 1) k[m] = 0; /* padding */
        val = (uint32_t *)(void *)(blk + ((2 * m + 3) & ~(size_t)3));
    } else {
        uint64_t *hi = (uint64_t *)(void *)blk;
        hi[0] = (uint64_t)(m - 1);
        for (size_t i = 1; i < m; i++)
            hi[i] = b->bhi[j + i];
        if (b->need_lo) {
            uint64_t *lo = hi + m;
            lo[0] = 0;
            for (size_t i = 1; i < m; i++)
                lo[i] = b->blo[j + i];
        }
        val = (uint32_t *)(void *)(blk + 8 * m * (b->need_lo ? 2 : 1));
        if (m & 1) val[m] = 0; /* padding */
    }
    for (size_t i = 0; i < m; i++)
        val[i] = b->bv[j + i];
    t->ranges_bytes = need;
    t->nrange += m;
    t->nranges++;
    return E_NONLEAF | E_RANGE | lines_hint(o, need - o) | (uint32_t)(o / unit);
}

static uint32_t build_span(builder_t *b, u128 s, unsigned depth, size_t j, size_t last);

/* Entries for the 2^bits children of the span [s, s + 2^(128-depth)) whose
 * first interval is j and last interval starting inside is last. */
static void fill_children(builder_t *b, u128 s, unsigned depth, unsigned bits, size_t j,
                          size_t last, uint32_t *out)
{
    unsigned cdepth = depth + bits;
    size_t cur = j;
    u128 cs = s;
    size_t nchild = (size_t)1 << bits;
    for (size_t c = 0; c < nchild && !b->err; c++) {
        while (cur < last && !u_lt(cs, (u128){b->bhi[cur + 1], b->blo[cur + 1]}))
            cur++;
        int of;
        u128 ce = u_add_pow2(cs, 128 - cdepth, &of);
        size_t cl = cur;
        while (cl < last && (of || u_lt((u128){b->bhi[cl + 1], b->blo[cl + 1]}, ce)))
            cl++;
        out[c] = build_span(b, cs, cdepth, cur, cl);
        cur = cl;
        cs = ce;
    }
}

static uint32_t build_span(builder_t *b, u128 s, unsigned depth, size_t j, size_t last)
{
    if (last == j) return b->bv[j];
    if (last - j + 1 <= b->range_max) return make_range(b, j, last);

    uint32_t child[256];
    fill_children(b, s, depth, 8, j, last, child);
    if (b->err) return LPM_NONE;

    lpm_t *t = b->t;
    size_t runs = 1;
    for (int c = 1; c < 256; c++)
        runs += child[c] != child[c - 1];
    size_t o = t->nodes_bytes, need = o + node_block_bytes(runs);
    if (o / 8 > E_INDEX || grow((void **)&t->nodes, &b->cap_nodes, need, 1) != 0) {
        b->err = PC_ENOMEM;
        return LPM_NONE;
    }
    unsigned char *blk = t->nodes + o;
    uint64_t *bm = (uint64_t *)(void *)blk;
    uint32_t *run = (uint32_t *)(void *)(blk + 36);
    memset(blk, 0, need - o);
    size_t k = 0;
    for (int c = 0; c < 256; c++) {
        if (c == 0 || child[c] != child[c - 1]) {
            bm[c >> 6] |= 1ull << (c & 63);
            run[k++] = child[c];
        }
    }
    unsigned acc = 0;
    for (int w = 0; w < 4; w++) {
        blk[32 + w] = (uint8_t)acc;
        acc += popc_portable(bm[w]);
    }
    t->nodes_bytes = need;
    t->nnodes++;
    t->nnvals += runs;
    return E_NONLEAF | lines_hint(o, need - o) | (uint32_t)(o / 8);
}

static void shrink(void **p, size_t n, size_t elem)
{
    if (!*p || n == 0) return;
    void *np = pc__realloc(*p, n * elem);
    if (np) *p = np;
}

/* Tables at least this large move into one huge-page-aligned block. Below,
 * a table fits the TLB's reach anyway and 2 MiB of slack would dominate. */
#ifndef PC_LPM_HUGE_MIN
#define PC_LPM_HUGE_MIN ((size_t)4 << 20)
#endif
#define LPM_HUGE ((size_t)2 << 20)

/* Move root, nodes and ranges into one block whose 2 MiB-aligned start holds
 * them, so that a lookup's loads land in a few huge pages: with 4 KiB pages a
 * table of ten megabytes spans thousands of pages, more than the TLB holds,
 * and on a VM every TLB miss is a two-dimensional page walk. The hint needs
 * the kernel's transparent huge pages in "madvise" or "always" mode; without
 * it (or off Linux) the block still works, in small pages. Best effort: on
 * any failure the table stays as built. */
static void move_to_huge_block(lpm_t *t)
{
    size_t root_b = 65536 * sizeof *t->root;
    /* 64-byte aligned parts: the entries' line hints are then exact */
    size_t nodes_o = root_b, ranges_o = nodes_o + ((t->nodes_bytes + 63) & ~(size_t)63);
    size_t total = ranges_o + t->ranges_bytes;
    if (total < PC_LPM_HUGE_MIN) return;
    size_t bytes = total + LPM_HUGE;
    unsigned char *blk = pc__malloc(bytes);
    if (!blk) return;
    unsigned char *base =
        (unsigned char *)(((uintptr_t)blk + LPM_HUGE - 1) & ~(uintptr_t)(LPM_HUGE - 1));
    /* before the copy, so that the first touch faults in huge pages */
    pc__vm_hint_huge(base, (total + LPM_HUGE - 1) & ~(LPM_HUGE - 1));
    memcpy(base, t->root, root_b);
    if (t->nodes_bytes) memcpy(base + nodes_o, t->nodes, t->nodes_bytes);
    if (t->ranges_bytes) memcpy(base + ranges_o, t->ranges, t->ranges_bytes);
    pc__free(t->root);
    pc__free(t->nodes);
    pc__free(t->ranges);
    t->root = (uint32_t *)(void *)base;
    t->nodes = t->nodes_bytes ? base + nodes_o : NULL;
    t->ranges = t->ranges_bytes ? base + ranges_o : NULL;
    t->block = blk;
    t->block_bytes = bytes;
}

static int cpu_has_popcnt(void)
{
#if LPM_DISPATCH
    return __builtin_cpu_supports("popcnt") ? 1 : 0;
#else
    return 1;
#endif
}

int lpm_build(lpm_t *t, int family, const lpm_prefix_t *p, size_t n)
{
    memset(t, 0, sizeof *t);
    if (family != 4 && family != 6) return PC_EINVAL;
    t->family = family;
    t->hw_popcnt = cpu_has_popcnt();
    if (n == 0) return 0;
    if (n > LPM_MAX_VALUE) return PC_EINVAL;

    builder_t b;
    memset(&b, 0, sizeof b);
    b.t = t;
    b.range_max = family == 4 ? PC_LPM_RANGE_MAX4 : PC_LPM_RANGE_MAX6;
    int rc = make_intervals(&b, family, p, n);
    if (rc == 0) {
        for (size_t i = 0; i < b.nb && !b.need_lo; i++)
            b.need_lo = b.blo[i] != 0;
        t->range_lo = b.need_lo;
        t->root = pc__malloc(65536 * sizeof *t->root);
        if (!t->root) rc = PC_ENOMEM;
    }
    if (rc == 0) {
        u128 zero = {0, 0};
        fill_children(&b, zero, 0, 16, 0, b.nb - 1, t->root);
        rc = b.err;
    }
    pc__free(b.bhi);
    pc__free(b.blo);
    pc__free(b.bv);
    if (rc != 0) {
        lpm_free(t);
        t->family = family;
        return rc;
    }
    shrink((void **)&t->nodes, t->nodes_bytes, 1);
    shrink((void **)&t->ranges, t->ranges_bytes, 1);
    move_to_huge_block(t);
    return 0;
}

void lpm_free(lpm_t *t)
{
    if (t->block) {
        pc__free(t->block);
    } else {
        pc__free(t->root);
        pc__free(t->nodes);
        pc__free(t->ranges);
    }
    int family = t->family;
    memset(t, 0, sizeof *t);
    t->family = family;
}

size_t lpm_bytes(const lpm_t *t)
{
    size_t b = sizeof *t;
    if (t->block) return b + t->block_bytes;
    if (t->root) b += 65536 * sizeof *t->root;
    b += t->nodes_bytes;
    b += t->ranges_bytes;
    return b;
}

void lpm_shape(const lpm_t *t, lpm_shape_t *out)
{
    out->nodes = t->nnodes;
    out->node_entries = t->nnvals;
    out->range_lists = t->nranges;
    out->range_entries = t->nrange;
}

/* Blocks of the entry e and below whose line hint misses a line of the
 * block (at its address in memory); *checked counts the entries seen. */
static size_t check_entry(const lpm_t *t, uint32_t e, size_t *checked)
{
    if (!(e & E_NONLEAF)) return 0;
    size_t bytes, bad = 0;
    const unsigned char *blk;
    if (e & E_RANGE) {
        size_t unit = t->family == 4 ? 4 : 8;
        blk = t->ranges + (size_t)(e & E_INDEX) * unit;
        size_t m = 1; /* the first key slot holds the count that follows */
        if (t->family == 4)
            m += ((const uint16_t *)(const void *)blk)[0];
        else
            m += (size_t)((const uint64_t *)(const void *)blk)[0];
        bytes = range_block_bytes(t, t->range_lo, m);
    } else {
        blk = t->nodes + ((size_t)(e & E_INDEX) << 3);
        const uint64_t *bm = (const uint64_t *)(const void *)blk;
        const uint32_t *run = (const uint32_t *)(const void *)(blk + 36);
        size_t runs = 0;
        for (int w = 0; w < 4; w++)
            runs += popc_portable(bm[w]);
        bytes = node_block_bytes(runs);
        for (size_t i = 0; i < runs; i++)
            bad += check_entry(t, run[i], checked);
    }
    (*checked)++;
    /* the hint the block would get at its address in memory */
    uint32_t want = lines_hint((size_t)(uintptr_t)blk, bytes);
    return bad + ((e & (E_LINES_MAX << E_LINES_SHIFT)) != want);
}

size_t lpm_check_lines(const lpm_t *t, size_t *checked)
{
    size_t bad = 0;
    *checked = 0;
    if (!t->root) return 0;
    for (size_t i = 0; i < 65536; i++)
        bad += check_entry(t, t->root[i], checked);
    return bad;
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                   */
/* ------------------------------------------------------------------------ */

LPM_INLINE unsigned popc(uint64_t x, int hw)
{
#if defined(__GNUC__)
    if (hw) return (unsigned)__builtin_popcountll(x);
#endif
    return popc_portable(x);
}

/* Ask for the lines of e's block past its first, up to max of them, while
 * the first is loaded: a lookup then waits for one round of misses instead
 * of one per line it touches in turn. Branch-free (a line asked twice costs
 * nothing); a prefetch never faults, and the addresses go through uintptr_t
 * as the hint may reach past the last block. */
LPM_INLINE void prefetch_block(const unsigned char *blk, uint32_t e, unsigned max)
{
#if defined(__GNUC__)
    uintptr_t line = (uintptr_t)blk & ~(uintptr_t)63;
    unsigned n = (e >> E_LINES_SHIFT) & E_LINES_MAX;
    for (unsigned i = 1; i <= max; i++)
        __builtin_prefetch((const void *)(line + 64 * (uintptr_t)(n < i ? n : i)));
#else
    (void)blk;
    (void)e;
    (void)max;
#endif
}

/* Follow a node entry e to child c. */
LPM_INLINE uint32_t node_child(const lpm_t *t, uint32_t e, unsigned c, int hw)
{
    const unsigned char *blk = t->nodes + ((size_t)(e & E_INDEX) << 3);
    const uint64_t *bm = (const uint64_t *)(const void *)blk;
    const uint32_t *run = (const uint32_t *)(const void *)(blk + 36);
#if defined(__GNUC__)
    /* The run entry is in the bitmap's line only for the first few runs;
     * asking for the next three lines now makes their misses overlap the
     * bitmap's instead of following it (they hold the runs of ~99.9% of
     * the lookups in a 1M-prefix IPv4 table). Fixed offsets, not the
     * entry's line hint: measured, decoding the hint cost more lookup
     * throughput than the lines it saves asking for (docs/filter.md). */
    __builtin_prefetch((const void *)((uintptr_t)blk + 64));
    __builtin_prefetch((const void *)((uintptr_t)blk + 128));
    __builtin_prefetch((const void *)((uintptr_t)blk + 192));
#endif
    unsigned w = c >> 6;
    uint64_t upto = bm[w] & (~0ull >> (63 - (c & 63)));
    return run[blk[32 + w] + popc(upto, hw) - 1];
}

/* Range lists: the last entry whose start <= the address. Branch-free binary
 * search; entry 0 is never read as a key (it is the span start). */
LPM_INLINE uint32_t range4(const lpm_t *t, uint32_t e, uint32_t addr)
{
    const unsigned char *blk = t->ranges + ((size_t)(e & E_INDEX) << 2);
    prefetch_block(blk, e, 2); /* 16 entries: 96 bytes at most */
    const uint16_t *k = (const uint16_t *)(const void *)blk, *p = k;
    uint16_t x = (uint16_t)addr;
    size_t m = (size_t)k[0] + 1, len = m;
    for (unsigned s = 0; SEARCH_ON(STEPS4, s, len); s++) {
        size_t half = len >> 1;
        p = p[half] <= x ? p + half : p;
        len -= half;
    }
    const uint32_t *val = (const uint32_t *)(const void *)(blk + ((2 * m + 3) & ~(size_t)3));
    return val[p - k];
}

LPM_INLINE uint32_t range6(const lpm_t *t, uint32_t e, uint64_t hi, uint64_t lo)
{
    const unsigned char *blk = t->ranges + ((size_t)(e & E_INDEX) << 3);
    prefetch_block(blk, e, E_LINES_MAX); /* keys and values, all at once */
    const uint64_t *k = (const uint64_t *)(const void *)blk;
    size_t m = (size_t)k[0] + 1, len = m, at = 0;
    const uint32_t *val;
    if (!t->range_lo) {
        for (unsigned s = 0; SEARCH_ON(STEPS6, s, len); s++) {
            size_t half = len >> 1;
            at = k[at + half] <= hi ? at + half : at;
            len -= half;
        }
        val = (const uint32_t *)(const void *)(k + m);
    } else {
        const uint64_t *kl = k + m;
        for (unsigned s = 0; SEARCH_ON(STEPS6, s, len); s++) {
            size_t half = len >> 1, mid = at + half;
            at = (k[mid] < hi || (k[mid] == hi && kl[mid] <= lo)) ? mid : at;
            len -= half;
        }
        val = (const uint32_t *)(const void *)(kl + m);
    }
    return val[at];
}

LPM_INLINE uint32_t lookup4_body(const lpm_t *t, uint32_t a, int hw)
{
    if (!t->root) return LPM_NONE;
    uint32_t e = t->root[a >> 16];
    int shift = 8;
    while (e & E_NONLEAF) {
        if (e & E_RANGE) return range4(t, e, a);
        e = node_child(t, e, (a >> shift) & 255, hw);
        shift -= 8;
    }
    return e;
}

LPM_INLINE uint32_t lookup6_body(const lpm_t *t, uint64_t hi, uint64_t lo, int hw)
{
    if (!t->root) return LPM_NONE;
    uint32_t e = t->root[hi >> 48];
    unsigned depth = 16;
    while (e & E_NONLEAF) {
        if (e & E_RANGE) return range6(t, e, hi, lo);
        unsigned c = depth < 64 ? (unsigned)(hi >> (56 - depth)) & 255
                                : (unsigned)(lo >> (120 - depth)) & 255;
        e = node_child(t, e, c, hw);
        depth += 8;
    }
    return e;
}

#if LPM_DISPATCH
LPM_TARGET_POPCNT static uint32_t lookup4_hw(const lpm_t *t, uint32_t a)
{
    return lookup4_body(t, a, 1);
}
LPM_TARGET_POPCNT static uint32_t lookup6_hw(const lpm_t *t, uint64_t hi, uint64_t lo)
{
    return lookup6_body(t, hi, lo, 1);
}

uint32_t lpm_lookup4(const lpm_t *t, uint32_t a)
{
    if (t->hw_popcnt) return lookup4_hw(t, a);
    return lookup4_body(t, a, 0);
}

uint32_t lpm_lookup6(const lpm_t *t, uint64_t hi, uint64_t lo)
{
    if (t->hw_popcnt) return lookup6_hw(t, hi, lo);
    return lookup6_body(t, hi, lo, 0);
}
#else
uint32_t lpm_lookup4(const lpm_t *t, uint32_t a)
{
    return lookup4_body(t, a, t->hw_popcnt);
}

uint32_t lpm_lookup6(const lpm_t *t, uint64_t hi, uint64_t lo)
{
    return lookup6_body(t, hi, lo, t->hw_popcnt);
}
#endif
