/* SPDX-License-Identifier: MIT */
/* Longest-prefix-match tables for IPv4 and IPv6 (immutable once built).
 *
 * One structure serves both families: a multibit trie with a 16-bit
 * direct-indexed root and 8-bit strides below it, leaf-pushed, where every
 * slot holds one of
 *   - a leaf: the value of the longest prefix covering the slot's whole span;
 *   - a node: 256 child slots compressed by a 256-bit "run starts here"
 *     bitmap (popcount finds the run; consecutive equal leaves share one
 *     entry), as in Lulea/Poptrie;
 *   - a range list: when the span holds few value changes, the sorted
 *     interval starts inside it and their values (binary search), keys and
 *     values in one contiguous block, which keeps the sparse IPv6 space (and
 *     scattered IPv4 /32s) from paying for a chain of mostly empty nodes.
 * docs/filter.md has the measurements behind these choices.
 *
 * Nodes and range lists are reached through a 32-bit entry that also
 * carries how many cache lines the block spans, so that a lookup asks for
 * all of a range list's lines at once (and a node's first few): a search
 * over several lines then waits for one round of cache misses instead of
 * one per line in turn.
 *
 * Addresses are 128-bit values (hi, lo), big-endian in meaning; an IPv4
 * address a sits in the top 32 bits: hi = (uint64_t)a << 32, lo = 0, and its
 * prefix lengths are 0..32.
 *
 * Thread safety: building is single-threaded; a built table is read-only and
 * may be looked up from any number of threads without synchronisation. */
#ifndef PC_FILTER_PREFIX_TABLE_H
#define PC_FILTER_PREFIX_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* Lookup result when no prefix matches; stored values are 1..LPM_MAX_VALUE. */
#define LPM_NONE      0u
#define LPM_MAX_VALUE 0x3fffffffu

typedef struct lpm_prefix_s {
    uint64_t hi, lo; /* network address, host bits clear */
    uint32_t value;  /* 1..LPM_MAX_VALUE */
    uint8_t len;     /* 0..32 (IPv4) or 0..128 (IPv6) */
} lpm_prefix_t;

typedef struct lpm_s {
    int family;     /* 4 or 6 */
    int hw_popcnt;  /* use the popcnt instruction (x86, detected at build) */
    uint32_t *root; /* 65536 slots, or NULL for an empty table */
    /* Bitmap nodes, each one block at an offset in units of 8 bytes:
     *   uint64 bm[4]   bit c set: a run of equal children starts at child c
     *   uint8 cnt[4]   runs starting in bm[0..w-1]
     *   uint32 run[n]  the entry of each run, padded to 8 bytes
     * The runs follow the bitmap, so a lookup's two loads are close. */
    unsigned char *nodes;
    size_t nodes_bytes;
    /* Range lists, each one block at an offset in units of 4 bytes (IPv4)
     * or 8 bytes (IPv6):
     *   IPv4: uint16 key[m] (key[0] = m - 1, the others address bits
     *         16..31), padded to 4 bytes, then uint32 value[m];
     *   IPv6: uint64 hi[m] (hi[0] = m - 1, the others address bits 0..63),
     *         uint64 lo[m] only if range_lo, then uint32 value[m], padded. */
    unsigned char *ranges;
    int range_lo;          /* IPv6 keys carry bits 64..127 (some prefix > /64) */
    size_t nnodes, nnvals; /* nodes, run entries in them */
    size_t ranges_bytes;   /* used bytes of ranges */
    size_t nranges;        /* range lists */
    size_t nrange;         /* entries in all range lists */
    /* A large table is moved, once built, into one block whose 2 MiB-aligned
     * part holds root, nodes and ranges (Linux: marked for transparent huge
     * pages): a random lookup then takes no TLB miss. NULL otherwise. */
    void *block;
    size_t block_bytes;
} lpm_t;

/* Build t from n prefixes sorted by (address, length) ascending, without
 * duplicates, host bits clear, values in 1..LPM_MAX_VALUE. t is overwritten
 * (not freed). Returns 0, PC_EINVAL (input breaks a rule above), PC_ENOMEM.
 * On error t is left empty (lpm_free is still safe). */
int lpm_build(lpm_t *t, int family, const lpm_prefix_t *p, size_t n);

/* Free what lpm_build allocated; t becomes an empty table. */
void lpm_free(lpm_t *t);

/* Value of the longest prefix containing the address, or LPM_NONE. */
uint32_t lpm_lookup4(const lpm_t *t, uint32_t addr);
uint32_t lpm_lookup6(const lpm_t *t, uint64_t hi, uint64_t lo);

/* Bytes held by the table (allocated, including a huge-page block's
 * alignment slack, which is never touched). */
size_t lpm_bytes(const lpm_t *t);

/* Shape of a table, for tests and the docs. */
typedef struct lpm_shape_s {
    size_t nodes;         /* bitmap nodes */
    size_t node_entries;  /* run entries in nodes */
    size_t range_lists;   /* range lists */
    size_t range_entries; /* entries in range lists */
} lpm_shape_t;
void lpm_shape(const lpm_t *t, lpm_shape_t *out);

/* Layout check, for tests: every node and range list carries in its entry
 * the number of cache lines its block reaches past its first (the lookup
 * prefetches them); returns how many entries disagree with where their
 * block lies in memory, and sets *checked to the number of blocks seen.
 * Exact for a table in a huge-page block (its parts start 64-byte aligned);
 * a smaller table's parts are where the allocator put them, so a nonzero
 * result there only means a prefetch asks for a line too few or too many.
 * Any thread, on a built table. */
size_t lpm_check_lines(const lpm_t *t, size_t *checked);

#endif
