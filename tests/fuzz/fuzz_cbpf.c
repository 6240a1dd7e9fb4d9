/* SPDX-License-Identifier: MIT */
/* Fuzz target: the classic BPF compiler of the listener's kernel filter
 * (src/filter/cbpf_compile.c). Its input is a rule set, which comes from
 * rule files and deny lists the operator may take from third parties; its
 * output runs in the kernel on every SYN, where a wrong branch drops
 * allowed clients or lets denied ones through.
 *
 * The input is a list of binary rule records (the fuzzer reaches prefix
 * structure directly, where rule text would mostly fail to parse):
 *   byte 0: bit 0 deny (else allow), bit 1 IPv6 (else IPv4)
 *   byte 1: prefix length (modulo 33 or 129)
 *   then 4 or 16 address bytes (host bits cleared here)
 * A repeated prefix is left out (a conflict would refuse the whole set), and
 * so is an IPv4-mapped IPv6 one (/96 or longer: refused, it never matches).
 * The records become rule text for pc_rules_load_string, which must accept
 * it.
 *
 * For each listener kind (IPv4; IPv6; IPv6 dual-stack) the program is
 * compiled and checked (abort() on violation):
 *   - PC_ENOBUFS: no instructions, a length over CBPF_MAXINSNS; otherwise
 *     1..CBPF_MAXINSNS instructions, known opcodes only, every jump inside
 *     the program, loads inside the TCP header or the IP header of the
 *     family, the last instruction a return; a set without a deny rule for
 *     the listener's families is the single "ret pass";
 *   - run by an interpreter with the kernel's load semantics, the program's
 *     verdict on a SYN from each prefix's first and last address, their
 *     neighbours and addresses derived from the input (of the families the
 *     listener receives; IPv4-mapped IPv6 left out, the kernel drops those
 *     SYNs first) is the one pc_rules_match gives; a packet with ACK, and
 *     one without SYN, passes, the ACK one within 3 instructions;
 *   - compiling the same set again gives the same program.
 *
 * Library allocations are routed to the C library so ASan sees them. */
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
#include "filter/cbpf_compile.h"
#include "cbpf_run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_RULES_MAX 1024
#define RAND_PROBE   64

typedef struct fz_rule_s {
    uint8_t v6;
    uint8_t deny;
    uint8_t len;
    uint8_t b[16];
} fz_rule_t;

static fz_rule_t g_rule[FZ_RULES_MAX];
static char g_text[FZ_RULES_MAX * (PC_RULE_TEXT_MAX + 1)];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_use_libc_allocator();
    pc_log_set_level(PC_LOG_OFF);
    return 0;
}

/* ---- addresses ------------------------------------------------------------ */

static void set_host_bits(uint8_t *b, unsigned nbytes, unsigned len, int one)
{
    for (unsigned bit = len; bit < nbytes * 8; bit++) {
        uint8_t m = (uint8_t)(0x80u >> (bit % 8));
        b[bit / 8] = one ? (uint8_t)(b[bit / 8] | m) : (uint8_t)(b[bit / 8] & ~m);
    }
}

/* b += delta (+1 or -1) as a big-endian number; 0 when it wrapped. */
static int addr_step(uint8_t *b, unsigned nbytes, int delta)
{
    for (unsigned i = nbytes; i-- > 0;) {
        if (delta > 0) {
            if (++b[i] != 0) return 1;
        } else {
            if (b[i]-- != 0) return 1;
        }
    }
    return 0;
}

static int is_mapped(const uint8_t b[16])
{
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(b, pre, 12) == 0;
}

/* ---- the interpreter ---------------------------------------------------------- */

/* The verdict (0: drop) and, in *steps, the instructions run. */
static uint32_t run(const cbpf_prog_t *prog, const cbpf_pkt_t *p, size_t *steps)
{
    uint32_t ret = 0;
    size_t at;
    if (cbpf_run(prog, p, &ret, steps, &at) != CBPF_RUN_OK) abort();
    return ret;
}

/* Every instruction's shape, whatever path reaches it. */
static void check_static(const cbpf_prog_t *p, int family, int dual)
{
    if (!p->insn || p->len < 1 || p->len > CBPF_MAXINSNS) abort();
    if (p->insn[p->len - 1].code != CBPF_RET_K) abort();
    size_t ipmax = family == 4 ? 20 : 40;
    for (size_t i = 0; i < p->len; i++) {
        const cbpf_insn_t *in = &p->insn[i];
        size_t rest = p->len - i - 1; /* instructions after this one */
        switch (in->code) {
        case CBPF_LD_B_ABS:
        case CBPF_LD_W_ABS: {
            unsigned n = in->code == CBPF_LD_B_ABS ? 1 : 4;
            int64_t off = (int32_t)in->k;
            if (off >= 0) {
                if ((uint64_t)off + n > 20) abort();
            } else if (off < CBPF_NET_OFF || (uint64_t)(off - CBPF_NET_OFF) + n > ipmax) {
                abort();
            }
            break;
        }
        case CBPF_JA:
            if (in->k >= rest) abort();
            break;
        case CBPF_JEQ_K:
        case CBPF_JGT_K:
        case CBPF_JGE_K:
        case CBPF_JSET_K:
            if (in->jt >= rest || in->jf >= rest) abort();
            break;
        case CBPF_RET_K:
            if (in->k != 0 && in->k != CBPF_PASS) abort();
            break;
        default:
            abort();
        }
    }
    if (family == 4 && p->ranges6) abort();
    if (family == 6 && !dual && p->ranges4) abort();
}

static int ref_denied(const pc_rules_t *r, int v6, const uint8_t *b)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, b, 16);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, b, 4);
    }
    pc_rule_action_t act = PC_RULE_ALLOW;
    int rc = pc_rules_match(r, (struct sockaddr *)&ss, &act, NULL);
    if (rc < 0) abort();
    return rc == 1 && act == PC_RULE_DENY;
}

static void probe(const cbpf_prog_t *p, const pc_rules_t *r, int family, int dual, int v6,
                  const uint8_t *b)
{
    if (v6 ? family != 6 : !(family == 4 || dual)) return; /* not received */
    if (v6 && is_mapped(b)) return;
    cbpf_pkt_t pk;
    size_t steps;
    cbpf_pkt_make(&pk, v6, b, 0x02); /* SYN */
    if ((run(p, &pk, &steps) == 0) != ref_denied(r, v6, b)) abort();
    static const uint8_t acks[] = {0x10, 0x12, 0x11, 0x18, 0x14};
    cbpf_pkt_make(&pk, v6, b, acks[b[v6 ? 15 : 3] % sizeof acks]);
    if (run(p, &pk, &steps) == 0 || steps > 3) abort();
    cbpf_pkt_make(&pk, v6, b, 0x04); /* RST: not judged */
    if (run(p, &pk, &steps) == 0) abort();
}

static void check_kind(const pc_rules_t *r, size_t n, int family, int dual)
{
    cbpf_prog_t p, again;
    memset(&p, 0xa5, sizeof p);
    int rc = cbpf_compile(r, family, dual, &p);
    if (rc == PC_ENOMEM) return;
    if (rc == PC_ENOBUFS) {
        if (p.insn || (p.len <= CBPF_MAXINSNS && !p.len_at_least)) abort();
        return;
    }
    if (rc != 0) abort();
    check_static(&p, family, dual);

    int any_deny = 0;
    for (size_t i = 0; i < n; i++)
        if (g_rule[i].deny && (g_rule[i].v6 ? family == 6 : (family == 4 || dual))) any_deny = 1;
    if (!any_deny && (p.len != 1 || p.insn[0].k != CBPF_PASS)) abort();

    for (size_t i = 0; i < n; i++) {
        const fz_rule_t *ru = &g_rule[i];
        unsigned nb = ru->v6 ? 16 : 4;
        uint8_t b[16];
        memcpy(b, ru->b, nb);
        probe(&p, r, family, dual, ru->v6, b); /* first */
        if (addr_step(b, nb, -1)) probe(&p, r, family, dual, ru->v6, b);
        memcpy(b, ru->b, nb);
        set_host_bits(b, nb, ru->len, 1);
        probe(&p, r, family, dual, ru->v6, b); /* last */
        if (addr_step(b, nb, +1)) probe(&p, r, family, dual, ru->v6, b);
    }
    for (int i = 0; i < RAND_PROBE; i++) {
        uint8_t b[16];
        uint64_t x = rng_next(), y = rng_next();
        memcpy(b, &x, 8);
        memcpy(b + 8, &y, 8);
        /* near a rule's prefix half the time */
        if (n && (x & 1)) {
            const fz_rule_t *ru = &g_rule[y % n];
            unsigned nb = ru->v6 ? 16 : 4;
            unsigned keep = ru->len;
            uint8_t m[16];
            memcpy(m, ru->b, nb);
            for (unsigned bit = keep; bit < nb * 8; bit++)
                if ((b[bit / 8] >> (7 - bit % 8)) & 1) m[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
            probe(&p, r, family, dual, ru->v6, m);
        } else {
            probe(&p, r, family, dual, (int)(x >> 1 & 1), b);
        }
    }

    if (cbpf_compile(r, family, dual, &again) != 0) abort();
    if (again.len != p.len || again.ranges4 != p.ranges4 || again.ranges6 != p.ranges6 ||
        memcmp(again.insn, p.insn, p.len * sizeof *p.insn) != 0)
        abort();
    cbpf_prog_free(&again);
    cbpf_prog_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rng_seed(data, size); /* the random probes follow the input */

    size_t n = 0, tlen = 0;
    for (size_t off = 0; n < FZ_RULES_MAX && off + 2 <= size;) {
        fz_rule_t ru;
        memset(&ru, 0, sizeof ru);
        ru.deny = data[off] & 1;
        ru.v6 = (data[off] >> 1) & 1;
        unsigned nb = ru.v6 ? 16 : 4;
        ru.len = (uint8_t)(data[off + 1] % (nb * 8 + 1));
        if (off + 2 + nb > size) break;
        memcpy(ru.b, data + off + 2, nb);
        off += 2 + nb;
        set_host_bits(ru.b, nb, ru.len, 0);
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = g_rule[i].v6 == ru.v6 && g_rule[i].len == ru.len &&
                  memcmp(g_rule[i].b, ru.b, nb) == 0;
        if (dup) continue;
        if (ru.v6 && ru.len >= 96 && is_mapped(ru.b)) continue; /* refused: never matches */
        char a[INET6_ADDRSTRLEN];
        if (!inet_ntop(ru.v6 ? AF_INET6 : AF_INET, ru.b, a, sizeof a)) abort();
        int k = snprintf(g_text + tlen, sizeof g_text - tlen, "%s %s/%u\n",
                         ru.deny ? "deny" : "allow", a, ru.len);
        if (k <= 0 || (size_t)k >= sizeof g_text - tlen) abort();
        tlen += (size_t)k;
        g_rule[n++] = ru;
    }

    pc_rules_t *r = NULL;
    char err[256];
    int rc = pc_rules_load_string(g_text, tlen, "fuzz", &r, err, sizeof err);
    if (rc == PC_ENOMEM) return 0;
    if (rc != 0) {
        fprintf(stderr, "the rules were refused: %s\n%.*s", err, (int)tlen, g_text);
        abort();
    }
    if (pc_rules_count(r) != n) abort();
    check_kind(r, n, 4, 0);
    check_kind(r, n, 6, 0);
    check_kind(r, n, 6, 1);
    pc_rules_free(r);
    return 0;
}
