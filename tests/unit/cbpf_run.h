/* SPDX-License-Identifier: MIT */
/* For tests of the classic-BPF compiler (tests/unit/test_cbpf_compile.c,
 * tests/fuzz/fuzz_cbpf.c): a fake SYN segment with its IP header, and an
 * interpreter of the opcodes the compiler emits with the kernel's load
 * semantics (an absolute load outside the packet stops the program: drop). */
#ifndef PC_TEST_CBPF_RUN_H
#define PC_TEST_CBPF_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "filter/cbpf_compile.h"

typedef struct cbpf_pkt_s {
    uint8_t tcp[20];
    uint8_t net[40];
    size_t netlen;
} cbpf_pkt_t;

/* A packet from src (4 or 16 bytes as v6 says) with TCP flags. */
static inline void cbpf_pkt_make(cbpf_pkt_t *p, int v6, const uint8_t *src, uint8_t flags)
{
    memset(p, 0, sizeof *p);
    p->tcp[12] = 5 << 4;
    p->tcp[13] = flags;
    if (v6) {
        p->net[0] = 0x60;
        memcpy(p->net + 8, src, 16);
        p->netlen = 40;
    } else {
        p->net[0] = 0x45;
        memcpy(p->net + 12, src, 4);
        p->netlen = 20;
    }
}

/* Byte at offset k as the kernel's classic loads see it; -1 out of range. */
static inline int cbpf_pkt_byte(const cbpf_pkt_t *p, int64_t k)
{
    if (k >= 0) return k < (int64_t)sizeof p->tcp ? p->tcp[k] : -1;
    if (k >= CBPF_NET_OFF && k - CBPF_NET_OFF < (int64_t)p->netlen) return p->net[k - CBPF_NET_OFF];
    return -1;
}

enum { CBPF_RUN_OK = 0, CBPF_RUN_OUT = -1, CBPF_RUN_OPCODE = -2 };

/* Run prog on p: CBPF_RUN_OK with the verdict in *ret (0 = drop) and the
 * instructions executed in *steps; CBPF_RUN_OUT when it runs past its end,
 * CBPF_RUN_OPCODE for an opcode the compiler does not emit (*at: the
 * instruction's index in either case). Jumps go forward only, so it ends. */
static inline int cbpf_run(const cbpf_prog_t *prog, const cbpf_pkt_t *p, uint32_t *ret,
                           size_t *steps, size_t *at)
{
    uint32_t a = 0;
    size_t pc = 0;
    for (*steps = 1;; ++*steps) {
        *at = pc;
        if (pc >= prog->len) return CBPF_RUN_OUT;
        const cbpf_insn_t *in = &prog->insn[pc++];
        int64_t k = (int32_t)in->k;
        switch (in->code) {
        case CBPF_LD_B_ABS:
        case CBPF_LD_W_ABS: {
            int n = in->code == CBPF_LD_B_ABS ? 1 : 4;
            a = 0;
            for (int i = 0; i < n; i++) {
                int b = cbpf_pkt_byte(p, k + i);
                if (b < 0) return *ret = 0, CBPF_RUN_OK;
                a = a << 8 | (uint32_t)b;
            }
            break;
        }
        case CBPF_JA:
            pc += in->k;
            break;
        case CBPF_JEQ_K:
            pc += a == in->k ? in->jt : in->jf;
            break;
        case CBPF_JGT_K:
            pc += a > in->k ? in->jt : in->jf;
            break;
        case CBPF_JGE_K:
            pc += a >= in->k ? in->jt : in->jf;
            break;
        case CBPF_JSET_K:
            pc += (a & in->k) ? in->jt : in->jf;
            break;
        case CBPF_RET_K:
            *ret = in->k;
            return CBPF_RUN_OK;
        default:
            return CBPF_RUN_OPCODE;
        }
    }
}

#endif
