/* SPDX-License-Identifier: MIT */
/* Layouts shared by the eBPF program (kfilter.bpf.c) and its loader
 * (kfilter_ebpf.c). Fixed-width types only; both sides are little-endian
 * x86-64/arm64 and BPF of the same host. */
#ifndef PC_IOCP_BPF_KFILTER_SHARED_H
#define PC_IOCP_BPF_KFILTER_SHARED_H

#ifdef __bpf__
#include <linux/types.h>
typedef __u8 kf_u8;
typedef __u32 kf_u32;
typedef __u64 kf_u64;
#else
#include <stdint.h>
typedef uint8_t kf_u8;
typedef uint32_t kf_u32;
typedef uint64_t kf_u64;
#endif

/* Range value: 0 = no rule; else rule index + 1 in the low 31 bits and
 * KF_VAL_DENY when that rule denies. */
#define KF_VAL_DENY 0x80000000u
#define KF_VAL_RULE 0x7fffffffu

/* idx4 entries: one per top-16-bit block. Up to KF_SMALL4 IPv4 entries the
 * program searches them all (a few cached lines) and leaves idx4 alone. */
#define KF_IDX4_N 65536u
#define KF_SMALL4 512u
/* Binary search bounds: 2^22 entries per IPv4 block (more than any set of
 * 2^21 prefixes makes) and 2^22 IPv6 entries. */
#define KF_SEARCH_STEPS4 23
#define KF_SEARCH_STEPS6 23
#define KF_RANGES_MAX    ((kf_u32)1 << 22)

#define KF_TCP_SYN     0x02
#define KF_TCP_ACK     0x10
#define KF_IPPROTO_TCP 6

/* The first bytes of a packet, read with one helper call in the common
 * cases (the library's program and the benchmark's read them alike): an
 * IPv4 header without options and the TCP header up to its flags
 * (KF_HEAD); the IPv6 fixed header and the TCP header up to its flags
 * (KF_HEAD6), for a packet the kernel marked IPv6 (__sk_buff.protocol
 * KF_ETH_P_V6, network byte order; every IPv6 TCP packet is longer). */
#define KF_HEAD     34
#define KF_HEAD6    54
#define KF_ETH_P_V6 0x86DD
/* The furthest a TCP header may lie behind IPv6 extension headers for the
 * program to read it (else the packet passes to user space). */
#define KF_EXT6_MAX 2048

struct kf_range6 {
    kf_u64 hi, lo; /* start of the interval */
    kf_u32 val;
    kf_u32 pad;
};

/* Source key of the bucket and blocked maps: the address masked to the
 * source prefix, IPv4 in the top 32 bits of hi. */
struct kf_src {
    kf_u32 family;
    kf_u32 pad;
    kf_u64 hi, lo;
};

/* Value of the buckets map: the source's GCRA theoretical arrival time
 * (ns), and its last KF_SLOTS connection attempts that took a token, newest
 * first, so that a retransmitted SYN (the SYN-ACK was lost, or the kernel
 * dropped the SYN after this filter passed it, e.g. with the accept queue
 * full) is not charged again. A slot: a hash of the attempt (full source
 * address, port, initial sequence number; never 0) in the top 32 bits,
 * when it took the token in units of 2^30 ns (~1.07 s, 24 bits, wrapping)
 * in the next 24, and how many retransmissions passed since in the low 8;
 * 0 = empty. */
#define KF_SLOTS 4
struct kf_bucket {
    kf_u64 tat;
    kf_u64 slot[KF_SLOTS];
};

/* A SYN that repeats a charged attempt within KF_RETX_UNITS (~16 s) is a
 * retransmission and passes without a token, KF_RETX_MAX times at most:
 * Linux sends its first three retransmissions 1, 3 and 7 s after the SYN,
 * Windows its two 3 and 9 s after. A source that completes handshakes and
 * opens the same port and ISN again could pass at most 1 + KF_RETX_MAX
 * SYNs per token; the accept thread's own rate still judges each. */
#define KF_RETX_UNITS 15u
#define KF_RETX_MAX   3u

struct kf_cfg {
    kf_u64 interval_ns; /* 1e9 / rate; 0: no bucket */
    kf_u64 window_ns;   /* (burst - 1) * interval_ns */
    kf_u64 mask6_hi, mask6_lo;
    kf_u32 mask4;
    kf_u32 shadow;
    kf_u32 n4, n6; /* entries of ranges4 / ranges6 */
    kf_u32 blocks; /* 1: look the source up in the blocked map */
    kf_u32 pad;
};

/* Slots of the per-CPU stats array. */
enum {
    KF_ST_SYN = 0,
    KF_ST_DROP_RULES,
    KF_ST_DROP_RATE,
    KF_ST_DROP_MAX,
    KF_ST_WOULD_DROP,
    KF_ST_SYN_RETX, /* retransmitted SYNs passed without a token */
    KF_ST_N
};

#endif
