/* SPDX-License-Identifier: MIT */
/* The rule set as a classic BPF socket filter for a listening socket: the
 * classic tier of the listener's kernel filter (docs/kernel-filter.md).
 *
 * The program runs in the kernel on every packet that reaches the listener
 * (and, inherited, on every packet of its accepted sockets), with skb->data
 * at the TCP header and the IP header reached through negative "network
 * offset" loads. It decides only SYNs without ACK:
 *
 *     ldb  [13]                 TCP flags
 *     jset #0x10 -> pass        any ACK: leaves after 3 instructions
 *     jset #0x02 ... else pass  not a SYN: pass
 *     (dual-stack: ldb [net+0]; jge #0x60 -> IPv6 tree, else IPv4 tree)
 *     IPv4: ld [net+12]; balanced tree of jge over the range starts
 *     IPv6: the same over 128-bit starts, compared as up to four words
 *           [net+8], [net+12], [net+16], [net+20] (trailing zero words of a
 *           start are not compared)
 *     leaves: ret #0 (drop: a denied range) or ret #0xffffffff (pass)
 *
 * The longest-prefix-match rule set is resolved into sorted disjoint ranges
 * by evaluating the set's own lookup (rules_lookup) at every prefix boundary,
 * so the program agrees with user space by construction, duplicates and
 * allow-inside-deny included; neighbouring ranges with the same verdict are
 * merged. Conditional jumps reach 255 instructions; farther targets go
 * through a "ja" trampoline.
 *
 * An IPv6 packet whose source is IPv4-mapped (::ffff:a.b.c.d) is judged by
 * the IPv6 ranges here while user space matches it as IPv4; Linux drops such
 * SYNs before they reach the listener (tcp_v6_conn_request), so the
 * difference cannot be seen.
 *
 * Pure computation: no syscall, no socket header, builds on every platform
 * (the instruction layout is struct sock_filter's). Any thread; the rule set
 * is only read. */
#ifndef PC_FILTER_CBPF_COMPILE_H
#define PC_FILTER_CBPF_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "filter/rules.h"

/* One instruction, laid out as Linux's struct sock_filter. */
typedef struct cbpf_insn_s {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
} cbpf_insn_t;

/* Opcodes emitted (the classic BPF encoding). */
enum {
    CBPF_LD_W_ABS = 0x20, /* A = 32-bit big-endian word at k */
    CBPF_LD_B_ABS = 0x30, /* A = byte at k */
    CBPF_JA = 0x05,       /* pc += k */
    CBPF_JEQ_K = 0x15,    /* pc += (A == k) ? jt : jf */
    CBPF_JGT_K = 0x25,    /* pc += (A > k) ? jt : jf */
    CBPF_JGE_K = 0x35,    /* pc += (A >= k) ? jt : jf */
    CBPF_JSET_K = 0x45,   /* pc += (A & k) ? jt : jf */
    CBPF_RET_K = 0x06,    /* return k: 0 drops the packet */
};

/* The kernel's limit on a classic program (BPF_MAXINSNS). */
#define CBPF_MAXINSNS 4096
/* Loads at CBPF_NET_OFF + n read byte n of the network (IP) header. */
#define CBPF_NET_OFF (-0x100000)
/* The verdict "keep the whole packet". */
#define CBPF_PASS 0xffffffffu

typedef struct cbpf_prog_s {
    cbpf_insn_t *insn; /* pc__malloc'ed; NULL when len does not fit */
    size_t len;        /* instructions (also set when too big: what it would need) */
    int len_at_least;  /* too big by far: len is a lower bound (the ranges), not counted */
    size_t ranges4;    /* disjoint IPv4 ranges in the tree (0: no IPv4 tree) */
    size_t ranges6;    /* disjoint IPv6 ranges (0: no IPv6 tree) */
} cbpf_prog_t;

/* Compile rules (NULL: no rules) into a filter for a listener of family 4 or
 * 6; dual_stack (family 6 only): the listener also receives IPv4 packets, so
 * the program branches on the IP version. A set with no denied address for
 * the listener compiles to one instruction (ret pass). On success the caller
 * owns out->insn (cbpf_prog_free).
 * Returns 0, PC_ENOBUFS (more than CBPF_MAXINSNS instructions: out->len says
 * how many, or with out->len_at_least at least how many, out->insn is NULL),
 * PC_ENOMEM, PC_EINVAL (bad family, out NULL). Any thread. O(n log n) in the
 * rules of the family. */
int cbpf_compile(const pc_rules_t *rules, int family, int dual_stack, cbpf_prog_t *out);

/* Free a compiled program (its instructions); NULL or empty is a no-op. */
void cbpf_prog_free(cbpf_prog_t *p);

#endif
