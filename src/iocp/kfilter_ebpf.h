/* SPDX-License-Identifier: MIT */
/* The eBPF tier of the listener's kernel filter (Linux only).
 *
 * A BPF_PROG_TYPE_SOCKET_FILTER program attached to a listening socket with
 * SO_ATTACH_BPF runs in the kernel on every packet for that socket before
 * TCP looks at it (tcp_v4_rcv / tcp_v6_rcv -> tcp_filter). For a SYN it
 * decides, before any SYN-ACK:
 *   1. blocked source (the accept thread marked it: per_source_max reached)
 *      -> drop until unmarked;
 *   2. rules: longest-prefix match over the rule set (maps) -> a deny rule
 *      drops, an allow rule or no match goes on;
 *   3. per-source SYN token bucket (rate, burst) -> drop when empty.
 * Anything that is not a SYN (no ACK) leaves the program at once with
 * "pass": accepted sockets inherit the listener's filter. In shadow mode the
 * program counts what it would drop and passes.
 *
 * A dual-stack (AF_INET6, not v6-only) listener receives IPv4 SYNs as IPv4
 * packets; the program looks at the IP version of the network header, not at
 * the listener's family.
 *
 * Per-rule drop counters are kept in the kernel and folded into the rule
 * set's own hit counters by kf_ebpf_collect_hits.
 *
 * Threads: every function runs on a control thread (the one starting the
 * server, the one swapping rules) except kf_ebpf_block_source (accept thread
 * and workers, one bpf() syscall) and kf_ebpf_stats (any thread). The server
 * serialises the calls on one kf_ebpf_t, with one exception: those two use
 * only the maps shared by every program, fixed by kf_ebpf_open, and may run
 * while kf_ebpf_set_rules builds and swaps in a new program (the server does
 * not make a swap wait for them, nor them for a swap). Loads of different
 * kf_ebpf_t (kf_ebpf_open, kf_ebpf_set_rules) may run at once: the step that
 * swaps in libbpf's print function, global to the process, is serialised
 * inside. */
#ifndef PC_IOCP_KFILTER_EBPF_H
#define PC_IOCP_KFILTER_EBPF_H

#include <stddef.h>
#include <stdint.h>

#include "filter/addr.h"
#include "filter/rules.h"

typedef struct kf_ebpf_s kf_ebpf_t;

typedef struct kf_ebpf_config_s {
    double rate;              /* per-source SYNs per second; 0 = no bucket */
    unsigned burst;           /* bucket size (>= 1 when rate > 0) */
    uint8_t source_prefix_v4; /* source key: IPv4 prefix length (as the tracker) */
    uint8_t source_prefix_v6; /* source key: IPv6 prefix length */
    unsigned source_entries;  /* entries of the bucket map (if rate > 0) and the blocked map
                               * (if block_sources); 0 = 65536. A map not in use is made with
                               * one entry: the kernel preallocates every entry of both (about
                               * 8 and 6 MiB at 65536), and the program skips them. */
    int block_sources;        /* kf_ebpf_block_source will be used (per-source maximum) */
    int shadow;               /* count, never drop */
    /* Another object (another listener's of the same server, same settings)
     * whose source maps (buckets, blocked) this one uses too: a source's
     * rate and mark are the server's, not a listener's. NULL: its own. Read
     * by kf_ebpf_open only (the maps are then held through our own fds);
     * kf_ebpf_kernel_bytes counts them in each object that uses them. */
    const kf_ebpf_t *share;
} kf_ebpf_config_t;

/* Counters of SYNs the program saw (summed over CPUs). */
typedef struct kf_ebpf_stats_s {
    uint64_t syn_seen;
    uint64_t dropped_rules;   /* denied by a rule */
    uint64_t dropped_rate;    /* bucket empty */
    uint64_t dropped_max;     /* source marked blocked */
    uint64_t would_drop;      /* shadow mode: would have dropped (any step) */
    uint64_t syn_retransmits; /* retransmitted SYNs passed without a token */
} kf_ebpf_stats_t;

/* Build maps and program for rules (NULL: no rules) and attach them to the
 * listening socket fd (SO_ATTACH_BPF); fd < 0 builds without attaching (tests
 * and the benchmark drive the program with BPF_PROG_TEST_RUN). Returns 0, or:
 * PC_EPERM (bpf() or the attach refused: no CAP_BPF / CAP_NET_ADMIN),
 * PC_ENOSYS (no eBPF support, the kernel's verifier refused the program, or
 * the tier not built), PC_ENOMEM, PC_EINVAL. On failure nothing stays
 * attached or allocated, *out is NULL and why (if not NULL) receives a
 * one-line reason ("bpf(BPF_MAP_CREATE): Operation not permitted"). */
int kf_ebpf_open(const kf_ebpf_config_t *cfg, const pc_rules_t *rules, int fd, kf_ebpf_t **out,
                 char *why, size_t whylen);

/* Put a new rule set in the kernel: new maps and program built beside the
 * live ones, then swapped with one SO_ATTACH_BPF (atomic for the kernel: a
 * SYN sees the old program or the new). The source maps (buckets, blocked
 * sources) and the stats carry over. Right after the swap, before returning,
 * the old set's kernel drop counts are folded into old_rules' hit counters
 * (so the server's carry of counters to the new set includes them, and no
 * drop counted between a fold and the swap is lost); old_rules NULL drops
 * them. On failure the old program stays in force and the error is returned
 * as for kf_ebpf_open. */
int kf_ebpf_set_rules(kf_ebpf_t *k, pc_rules_t *old_rules, const pc_rules_t *new_rules, char *why,
                      size_t whylen);

/* Add the kernel drops per rule since the last call to the rule set's hit
 * counters (rules must be the set the program was built from). */
void kf_ebpf_collect_hits(kf_ebpf_t *k, pc_rules_t *rules);

/* Mark (block = 1) or unmark (0) a source key (the address masked to the
 * source prefix) so its SYNs are dropped / passed again. Returns 0, or
 * PC_EINVAL (k opened without block_sources, or a bad address), PC_ENOBUFS
 * (the blocked map is full), another PC_E* code from bpf(). */
int kf_ebpf_block_source(kf_ebpf_t *k, const addr_t *src, int block);

/* Counters since kf_ebpf_open (they survive kf_ebpf_set_rules). k NULL or a
 * failing read: zeros. */
void kf_ebpf_stats(kf_ebpf_t *k, kf_ebpf_stats_t *out);

/* File descriptor of the program in force (owned by k), or -1: for tests and
 * the benchmark (BPF_PROG_TEST_RUN). */
int kf_ebpf_prog_fd(const kf_ebpf_t *k);

/* Entries the kernel gave the source maps (read back with
 * BPF_OBJ_GET_INFO_BY_FD): the bucket map and the blocked map. Returns 0, or
 * PC_EINVAL (k NULL), PC_ENOSYS (tier not built), a PC_E* code from bpf(). */
int kf_ebpf_source_map_entries(const kf_ebpf_t *k, unsigned *buckets, unsigned *blocked);

/* Kernel memory held by the program in force and its maps (the shared ones
 * included): the sum of the "memlock" lines of their /proc/self/fdinfo
 * entries (Linux 6.4 and later: what the kernel allocated for them; 5.11 to
 * 6.3: an estimate from the maps' sizes; the program's JIT image is not in
 * it). A few open/read calls. Returns 0, or PC_EINVAL (k NULL, k without a
 * program, bytes NULL), PC_ENOSYS (tier not built, or a kernel without the
 * line), a PC_E* code from opening fdinfo (no /proc, no descriptor left). */
int kf_ebpf_kernel_bytes(const kf_ebpf_t *k, uint64_t *bytes);
/* The part of that held by the source maps (buckets, blocked), which the
 * listeners of a server share (cfg.share). Same errors (k without a program
 * is fine here). */
int kf_ebpf_source_bytes(const kf_ebpf_t *k, uint64_t *bytes);

/* Detach (SO_DETACH_BPF on fd, if fd >= 0) and free maps and program. NULL
 * is a no-op. */
void kf_ebpf_close(kf_ebpf_t *k, int fd);

#endif
