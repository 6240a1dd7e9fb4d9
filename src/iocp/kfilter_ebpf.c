/* SPDX-License-Identifier: MIT */
/* The eBPF tier of the listener's kernel filter: loads the embedded program
 * (bpf/kfilter.bpf.c) with libbpf, fills its maps from a rule set and
 * attaches it with SO_ATTACH_BPF. Design and measurements:
 * docs/kernel-filter-ebpf.md. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "portcullis.h"
#include "core/alloc.h"
#include "core/errno_map.h"
#include "core/log.h"
#include "iocp/kfilter_ebpf.h"
#include "iocp/bpf/kfilter_shared.h"

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif
#ifndef SO_DETACH_BPF
#define SO_DETACH_BPF 27
#endif

extern const unsigned char pc_kfilter_bpf_obj[];
extern const size_t pc_kfilter_bpf_obj_len;

/* One loaded program with the maps of one rule set. */
typedef struct kf_obj_s {
    struct bpf_object *obj;
    int prog_fd;
    size_t nrules;
    uint64_t *drops; /* rule_drops, mmapped */
    size_t drops_bytes;
} kf_obj_t;

struct kf_ebpf_s {
    kf_ebpf_config_t cfg;
    kf_obj_t *cur;
    int fd;                               /* listening socket, or -1 */
    int stats_fd, buckets_fd, blocked_fd; /* shared by every program (our dups) */
    int ncpu;
};

/* ---- errors ---------------------------------------------------------------- */

static int map_errno(int e)
{
    switch (e) {
    case EPERM:
    case EACCES:
        return PC_EPERM;
    case ENOMEM:
        return PC_ENOMEM;
    default:
        return PC_ENOSYS; /* EINVAL, E2BIG, ENOTSUPP (verifier, old kernel), ... */
    }
}

static int fail(char *why, size_t whylen, int e, const char *what)
{
    if (why && whylen) {
        const char *hint = "";
        if (e == EPERM || e == EACCES)
            /* the attach: this kernel (6.18) takes CAP_BPF alone, others
             * or an LSM may want CAP_NET_ADMIN as for classic filters */
            hint = strstr(what, "SO_ATTACH") ? " (the kernel wants a capability: CAP_NET_ADMIN)"
                                             : " (needs CAP_BPF or CAP_SYS_ADMIN)";
        snprintf(why, whylen, "%s: %s%s", what, strerror(e), hint);
    }
    return map_errno(e);
}

/* Set when libbpf prints the verifier's log of a program it failed to load
 * (the calling thread's load: libbpf prints from it). The verifier refuses
 * with EACCES, as a missing capability does: this tells them apart. */
static _Thread_local int t_verifier_refused;

/* libbpf's print function is global to the process, and each load swaps
 * ours in and puts the previous one back: loads hold this lock from the swap
 * to the put-back, or one would put back the application's handler while
 * another is loading, and that load's verifier log (and the refusal it
 * tells) would go there. Loads are rare (start, rule swaps). */
static pthread_mutex_t g_load_lock = PTHREAD_MUTEX_INITIALIZER;

/* libbpf's messages, at debug level, one log line per line: the verifier's
 * log comes as one message of many lines, kilobytes long, its verdict at the
 * end. The format attribute tells the compiler that fmt is a printf format
 * checked at libbpf's call sites. */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap) PC__PRINTF(2, 0);
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (strstr(fmt, "PROG LOAD LOG")) t_verifier_refused = 1;
    if (!pc__log_enabled(PC_LOG_DEBUG)) return 0;
    char small[512], *text = small;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    /* no memory for the whole message: its first bytes */
    if (n >= (int)sizeof small && (text = pc__malloc((size_t)n + 1)) != NULL)
        vsnprintf(text, (size_t)n + 1, fmt, again);
    else
        text = small;
    va_end(again);
    for (char *p = text; n > 0 && *p;) {
        char *end = strchr(p, '\n');
        if (end) *end = 0;
        /* most of libbpf's own lines already begin with "libbpf: " */
        if (*p) PC_LOGD("%s%s", strncmp(p, "libbpf: ", 8) ? "libbpf: " : "", p);
        if (!end) break;
        p = end + 1;
    }
    if (text != small) pc__free(text);
    return 0;
}

/* ---- rule ranges ----------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_r6(const void *a, const void *b)
{
    const struct kf_range6 *x = a, *y = b;
    if (x->hi != y->hi) return x->hi < y->hi ? -1 : 1;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

static uint32_t encode(const pc_rules_t *r, const addr_t *a)
{
    if (!r) return 0;
    uint32_t i = rules_lookup(r, a);
    if (i == RULE_NONE) return 0;
    return (i + 1) | (rules_action(r, i) == PC_RULE_DENY ? KF_VAL_DENY : 0);
}

/* IPv4 intervals: every prefix start and end + 1 is a boundary; between two
 * boundaries the longest match is constant, so each interval takes the value
 * the user-space lookup gives its start (the same answer by construction).
 * Equal neighbours merge. *out: entries start << 32 | value, entry 0 at 0. */
static int build_v4(const pc_rules_t *r, uint64_t **out, uint32_t *n)
{
    size_t nb = 1;
    size_t cap = 1 + (r ? 2 * r->n4 : 0);
    uint32_t *b = pc__malloc(cap * sizeof *b);
    if (!b) return PC_ENOMEM;
    b[0] = 0;
    for (size_t i = 0; r && i < r->n; i++) {
        const rule_t *ru = &r->rule[i];
        if (ru->family != 4) continue;
        uint64_t end = (uint64_t)ru->a4 + ((uint64_t)1 << (32 - ru->len));
        b[nb++] = ru->a4;
        if (end < ((uint64_t)1 << 32)) b[nb++] = (uint32_t)end;
    }
    qsort(b, nb, sizeof *b, cmp_u32);
    uint64_t *e = pc__malloc(nb * sizeof *e);
    if (!e) {
        pc__free(b);
        return PC_ENOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < nb; i++) {
        if (i && b[i] == b[i - 1]) continue;
        addr_t a = {.family = 4};
        a.b[0] = (uint8_t)(b[i] >> 24), a.b[1] = (uint8_t)(b[i] >> 16);
        a.b[2] = (uint8_t)(b[i] >> 8), a.b[3] = (uint8_t)b[i];
        uint32_t v = encode(r, &a);
        if (m && (uint32_t)e[m - 1] == v) continue;
        e[m++] = (uint64_t)b[i] << 32 | v;
    }
    pc__free(b);
    if (m > KF_RANGES_MAX) {
        pc__free(e);
        return PC_EINVAL;
    }
    *out = e;
    *n = (uint32_t)m;
    return 0;
}

static int build_v6(const pc_rules_t *r, struct kf_range6 **out, uint32_t *n)
{
    /* ::, and the edges of ::ffff:0:0/96 (matched as IPv4 in user space:
     * the program sends such sources to the IPv4 table, so the value of the
     * range inside it is moot). Without the end edge, the range starting
     * at ::ffff:0:0 would run on into ::1:0:0:0 and beyond, which are
     * plain IPv6 with verdicts of their own. */
    size_t nb = 3;
    size_t cap = 3 + (r ? 2 * r->n6 : 0);
    struct kf_range6 *b = pc__calloc(cap, sizeof *b);
    if (!b) return PC_ENOMEM;
    b[1].lo = 0x0000ffff00000000ull;
    b[2].lo = 0x0001000000000000ull;
    for (size_t i = 0; r && i < r->n; i++) {
        const rule_t *ru = &r->rule[i];
        if (ru->family != 6) continue;
        uint64_t hi = addr_load_be64(r->v6[ru->a4]), lo = addr_load_be64(r->v6[ru->a4] + 8);
        b[nb].hi = hi, b[nb].lo = lo, nb++;
        if (ru->len == 0) continue;
        /* end + 1 = start + 2^(128 - len), skipped when it wraps past 2^128 */
        uint64_t eh = hi, el = lo;
        if (ru->len > 64) {
            uint64_t add = (uint64_t)1 << (128 - ru->len);
            el = lo + add;
            if (el < lo && ++eh == 0) continue;
        } else {
            uint64_t add = ru->len == 64 ? 1 : (uint64_t)1 << (64 - ru->len);
            eh = hi + add;
            if (eh < hi) continue;
        }
        b[nb].hi = eh, b[nb].lo = el, nb++;
    }
    qsort(b, nb, sizeof *b, cmp_r6);
    size_t m = 0;
    for (size_t i = 0; i < nb; i++) {
        if (i && b[i].hi == b[i - 1].hi && b[i].lo == b[i - 1].lo) continue;
        addr_t a = {.family = 6};
        addr_store_be64(a.b, b[i].hi);
        addr_store_be64(a.b + 8, b[i].lo);
        uint32_t v = addr_is_v4mapped(&a) ? 0 : encode(r, &a);
        if (m && b[m - 1].val == v) continue;
        b[m] = b[i];
        b[m++].val = v;
    }
    if (m > KF_RANGES_MAX) {
        pc__free(b);
        return PC_EINVAL;
    }
    *out = b;
    *n = (uint32_t)m;
    return 0;
}

static int fcntl_dup(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* ---- maps ------------------------------------------------------------------ */

static void *map_mmap(struct bpf_map *m, size_t *bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* array maps keep their elements 8-byte aligned */
    size_t n = ((size_t)bpf_map__value_size(m) + 7) / 8 * 8 * bpf_map__max_entries(m);
    n = (n + page - 1) / page * page;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
    if (p == MAP_FAILED) return NULL;
    *bytes = n;
    return p;
}

static void cfg_fill(const kf_ebpf_config_t *c, struct kf_cfg *out, uint32_t n4, uint32_t n6)
{
    memset(out, 0, sizeof *out);
    if (c->rate > 0) {
        double iv = 1e9 / c->rate;
        out->interval_ns = iv < 1 ? 1 : (uint64_t)iv;
        out->window_ns = (uint64_t)(c->burst ? c->burst - 1 : 0) * out->interval_ns;
    }
    unsigned p4 = c->source_prefix_v4, p6 = c->source_prefix_v6;
    out->mask4 = p4 == 0 ? 0 : 0xffffffffu << (32 - p4);
    out->mask6_hi = p6 == 0 ? 0 : p6 >= 64 ? ~(uint64_t)0 : ~(uint64_t)0 << (64 - p6);
    out->mask6_lo = p6 <= 64 ? 0 : p6 == 128 ? ~(uint64_t)0 : ~(uint64_t)0 << (128 - p6);
    out->shadow = c->shadow ? 1 : 0;
    out->blocks = c->block_sources ? 1 : 0;
    out->n4 = n4;
    out->n6 = n6;
}

static void obj_free(kf_obj_t *o)
{
    if (!o) return;
    if (o->drops) munmap(o->drops, o->drops_bytes);
    bpf_object__close(o->obj);
    pc__free(o);
}

/* Load a program and maps for rules; the shared maps come from k when it has
 * them (a swap), else they are created here. */
static int obj_build(kf_ebpf_t *k, const pc_rules_t *rules, kf_obj_t **out, char *why,
                     size_t whylen)
{
    uint64_t *r4 = NULL;
    struct kf_range6 *r6 = NULL;
    uint32_t n4 = 0, n6 = 0;
    int rc = build_v4(rules, &r4, &n4);
    if (rc == 0) rc = build_v6(rules, &r6, &n6);
    if (rc) {
        pc__free(r4);
        if (why && whylen)
            snprintf(why, whylen, "%s",
                     rc == PC_ENOMEM ? "out of memory building the eBPF rule maps"
                                     : "too many prefixes for the eBPF tier");
        return rc;
    }
    /* libbpf's messages go to our debug log while we load (its default
     * prints to stderr); the previous handler is put back after the load,
     * both under g_load_lock */
    pthread_mutex_lock(&g_load_lock);
    libbpf_print_fn_t prev_print = libbpf_set_print(libbpf_log);
    int printing = 1;
    kf_obj_t *o = pc__calloc(1, sizeof *o);
    if (!o) {
        rc = PC_ENOMEM;
        if (why && whylen) snprintf(why, whylen, "out of memory");
        goto done;
    }
    o->nrules = rules ? rules->n : 0;
    LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "pc_kfilter");
    o->obj = bpf_object__open_mem(pc_kfilter_bpf_obj, pc_kfilter_bpf_obj_len, &oo);
    if (!o->obj) {
        rc = fail(why, whylen, errno, "opening the eBPF filter object");
        goto done;
    }
    struct bpf_object *ob = o->obj;
    struct bpf_map *m4 = bpf_object__find_map_by_name(ob, "ranges4");
    struct bpf_map *mi = bpf_object__find_map_by_name(ob, "idx4");
    struct bpf_map *m6 = bpf_object__find_map_by_name(ob, "ranges6");
    struct bpf_map *md = bpf_object__find_map_by_name(ob, "rule_drops");
    struct bpf_map *mc = bpf_object__find_map_by_name(ob, "cfg");
    struct bpf_map *ms = bpf_object__find_map_by_name(ob, "stats");
    struct bpf_map *mb = bpf_object__find_map_by_name(ob, "buckets");
    struct bpf_map *mk = bpf_object__find_map_by_name(ob, "blocked");
    struct bpf_program *pg = bpf_object__find_program_by_name(ob, "kfilter");
    if (!m4 || !mi || !m6 || !md || !mc || !ms || !mb || !mk || !pg) {
        rc = fail(why, whylen, EINVAL, "eBPF filter object incomplete");
        goto done;
    }
    /* the kernel preallocates every entry of both source maps: one entry
     * for a map the program does not use (set with the first program; the
     * next ones reuse the maps) */
    unsigned entries = k->cfg.source_entries;
    bpf_map__set_max_entries(m4, n4);
    bpf_map__set_max_entries(m6, n6);
    bpf_map__set_max_entries(md, o->nrules ? (uint32_t)o->nrules : 1);
    bpf_map__set_max_entries(mb, k->cfg.rate > 0 ? entries : 1);
    bpf_map__set_max_entries(mk, k->cfg.block_sources ? entries : 1);
    /* the maps every program of k uses (set by its first, or another
     * listener's source maps given to kf_ebpf_open) */
    if ((k->stats_fd >= 0 && bpf_map__reuse_fd(ms, k->stats_fd)) ||
        (k->buckets_fd >= 0 && bpf_map__reuse_fd(mb, k->buckets_fd)) ||
        (k->blocked_fd >= 0 && bpf_map__reuse_fd(mk, k->blocked_fd))) {
        rc = fail(why, whylen, errno, "reusing the eBPF source maps");
        goto done;
    }
    t_verifier_refused = 0;
    int err = bpf_object__load(ob);
    /* libbpf's part is done: the rest is maps written through mmap and
     * bpf(), nothing libbpf prints about */
    libbpf_set_print(prev_print);
    pthread_mutex_unlock(&g_load_lock);
    printing = 0;
    if (err && t_verifier_refused && (-err == EACCES || -err == EPERM)) {
        /* not a privilege: this kernel cannot run the program */
        rc = PC_ENOSYS;
        if (why && whylen)
            snprintf(why, whylen,
                     "bpf(): loading the eBPF filter: the kernel's verifier "
                     "refused it (its log: debug level)");
        goto done;
    }
    if (err) {
        rc = fail(why, whylen, -err, "bpf(): loading the eBPF filter");
        goto done;
    }
    size_t b4 = 0, bi = 0, b6 = 0;
    uint64_t *p4 = map_mmap(m4, &b4);
    uint64_t *pi = map_mmap(mi, &bi);
    struct kf_range6 *p6 = map_mmap(m6, &b6);
    o->drops = map_mmap(md, &o->drops_bytes);
    if (!p4 || !pi || !p6 || !o->drops) {
        int e = errno;
        if (p4) munmap(p4, b4);
        if (pi) munmap(pi, bi);
        if (p6) munmap(p6, b6);
        rc = fail(why, whylen, e, "mmap of an eBPF map");
        goto done;
    }
    memcpy(p4, r4, (size_t)n4 * sizeof *r4);
    memcpy(p6, r6, (size_t)n6 * sizeof *r6);
    /* idx4[h] = first(h) | first(h + 1) << 32, first(h) the first entry
     * starting at or after h << 16 (first(65536) = n4) */
    uint32_t j = 0, prev = 0;
    for (uint64_t h = 0; h <= KF_IDX4_N; h++) {
        while (j < n4 && (r4[j] >> 32) < (h << 16))
            j++;
        if (h) pi[h - 1] = prev | (uint64_t)j << 32;
        prev = j;
    }
    munmap(p4, b4);
    munmap(pi, bi);
    munmap(p6, b6);
    struct kf_cfg c;
    cfg_fill(&k->cfg, &c, n4, n6);
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(mc), &zero, &c, BPF_ANY)) {
        rc = fail(why, whylen, errno, "bpf(BPF_MAP_UPDATE_ELEM) of the eBPF config");
        goto done;
    }
    o->prog_fd = bpf_program__fd(pg);
    if (k->stats_fd < 0) k->stats_fd = fcntl_dup(bpf_map__fd(ms));
    if (k->buckets_fd < 0) k->buckets_fd = fcntl_dup(bpf_map__fd(mb));
    if (k->blocked_fd < 0) k->blocked_fd = fcntl_dup(bpf_map__fd(mk));
    if (k->stats_fd < 0 || k->buckets_fd < 0 || k->blocked_fd < 0) {
        rc = fail(why, whylen, errno, "dup of an eBPF map fd");
        goto done;
    }
    rc = 0;
done:
    if (printing) {
        libbpf_set_print(prev_print);
        pthread_mutex_unlock(&g_load_lock);
    }
    pc__free(r4);
    pc__free(r6);
    if (rc) {
        obj_free(o);
        o = NULL;
    }
    *out = o;
    return rc;
}

/* ---- the seam ------------------------------------------------------------- */

static int attach(int fd, int prog_fd, char *why, size_t whylen)
{
    if (fd < 0) return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof prog_fd) != 0)
        return fail(why, whylen, errno, "setsockopt(SO_ATTACH_BPF)");
    return 0;
}

static void close_fds(kf_ebpf_t *k)
{
    if (k->stats_fd >= 0) close(k->stats_fd);
    if (k->buckets_fd >= 0) close(k->buckets_fd);
    if (k->blocked_fd >= 0) close(k->blocked_fd);
}

int kf_ebpf_open(const kf_ebpf_config_t *cfg, const pc_rules_t *rules, int fd, kf_ebpf_t **out,
                 char *why, size_t whylen)
{
    if (out) *out = NULL;
    if (!cfg || !out || cfg->source_prefix_v4 > 32 || cfg->source_prefix_v6 > 128 ||
        cfg->rate < 0 || (cfg->rate > 0 && cfg->burst < 1)) {
        if (why && whylen) snprintf(why, whylen, "invalid eBPF filter configuration");
        return PC_EINVAL;
    }
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) return fail(why, whylen, ncpu ? -ncpu : ENOSYS, "counting possible CPUs");
    kf_ebpf_t *k = pc__calloc(1, sizeof *k);
    if (!k) {
        if (why && whylen) snprintf(why, whylen, "out of memory");
        return PC_ENOMEM;
    }
    k->cfg = *cfg;
    if (!k->cfg.source_entries) k->cfg.source_entries = 65536;
    k->fd = fd;
    k->ncpu = ncpu;
    k->stats_fd = k->buckets_fd = k->blocked_fd = -1;
    k->cfg.share = NULL; /* not kept: that object may close first */
    int rc = 0;
    if (cfg->share) {
        k->buckets_fd = fcntl_dup(cfg->share->buckets_fd);
        k->blocked_fd = fcntl_dup(cfg->share->blocked_fd);
        if (k->buckets_fd < 0 || k->blocked_fd < 0)
            rc = fail(why, whylen, errno, "dup of an eBPF map fd");
    }
    if (rc == 0) rc = obj_build(k, rules, &k->cur, why, whylen);
    if (rc == 0) rc = attach(fd, k->cur->prog_fd, why, whylen);
    if (rc) {
        obj_free(k->cur);
        close_fds(k);
        pc__free(k);
        return rc;
    }
    *out = k;
    return 0;
}

/* Move the kernel drop counts of o into rules' hit counters, zeroing them
 * (atomic exchange: the program may be adding at the same time). */
static void fold_hits(kf_obj_t *o, pc_rules_t *rules)
{
    if (!o || !rules || rules->n != o->nrules) return;
    for (size_t i = 0; i < o->nrules; i++) {
        if (!__atomic_load_n(&o->drops[i], __ATOMIC_RELAXED)) continue;
        uint64_t d = __atomic_exchange_n(&o->drops[i], 0, __ATOMIC_RELAXED);
        if (d) atomic_fetch_add_explicit(&rules->hits[i], d, memory_order_relaxed);
    }
}

int kf_ebpf_set_rules(kf_ebpf_t *k, pc_rules_t *old_rules, const pc_rules_t *new_rules, char *why,
                      size_t whylen)
{
    if (!k) return PC_EINVAL;
    kf_obj_t *o = NULL;
    int rc = obj_build(k, new_rules, &o, why, whylen);
    if (rc == 0) rc = attach(k->fd, o->prog_fd, why, whylen);
    if (rc) {
        obj_free(o);
        return rc;
    }
    /* After the swap the old program sees no new SYN (a CPU already inside
     * it finishes its one packet): its counts are final once folded. */
    kf_obj_t *old = k->cur;
    k->cur = o;
    fold_hits(old, old_rules);
    obj_free(old);
    return 0;
}

void kf_ebpf_collect_hits(kf_ebpf_t *k, pc_rules_t *rules)
{
    if (k) fold_hits(k->cur, rules);
}

int kf_ebpf_block_source(kf_ebpf_t *k, const addr_t *src, int block)
{
    if (!k || !k->cfg.block_sources || !src || (src->family != 4 && src->family != 6))
        return PC_EINVAL;
    addr_t a = *src;
    addr_normalize(&a);
    struct kf_src key;
    memset(&key, 0, sizeof key);
    key.family = a.family;
    if (a.family == 4) {
        addr_mask(&a, k->cfg.source_prefix_v4);
        key.hi = (uint64_t)addr_v4_u32(&a) << 32;
    } else {
        addr_mask(&a, k->cfg.source_prefix_v6);
        key.hi = addr_load_be64(a.b);
        key.lo = addr_load_be64(a.b + 8);
    }
    int err;
    if (block) {
        uint8_t one = 1;
        err = bpf_map_update_elem(k->blocked_fd, &key, &one, BPF_ANY);
    } else {
        err = bpf_map_delete_elem(k->blocked_fd, &key);
        if (err && errno == ENOENT) err = 0;
    }
    if (!err) return 0;
    switch (errno) {
    case E2BIG:
        return PC_ENOBUFS; /* the map is full */
    case ENOMEM:
        return PC_ENOMEM;
    case EPERM:
    case EACCES:
        return PC_EPERM;
    default:
        return PC_EIO;
    }
}

void kf_ebpf_stats(kf_ebpf_t *k, kf_ebpf_stats_t *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!k) return;
    uint64_t sum[KF_ST_N] = {0};
    uint64_t *v = pc__calloc((size_t)k->ncpu, sizeof *v);
    if (!v) return;
    for (uint32_t s = 0; s < KF_ST_N; s++) {
        if (bpf_map_lookup_elem(k->stats_fd, &s, v)) continue;
        for (int c = 0; c < k->ncpu; c++)
            sum[s] += v[c];
    }
    pc__free(v);
    out->syn_seen = sum[KF_ST_SYN];
    out->dropped_rules = sum[KF_ST_DROP_RULES];
    out->dropped_rate = sum[KF_ST_DROP_RATE];
    out->dropped_max = sum[KF_ST_DROP_MAX];
    out->would_drop = sum[KF_ST_WOULD_DROP];
    out->syn_retransmits = sum[KF_ST_SYN_RETX];
}

int kf_ebpf_prog_fd(const kf_ebpf_t *k)
{
    return k && k->cur ? k->cur->prog_fd : -1;
}

static int map_entries(int fd, unsigned *out)
{
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len)) return pc__from_errno(errno);
    *out = info.max_entries;
    return 0;
}

int kf_ebpf_source_map_entries(const kf_ebpf_t *k, unsigned *buckets, unsigned *blocked)
{
    if (!k || !buckets || !blocked) return PC_EINVAL;
    int rc = map_entries(k->buckets_fd, buckets);
    return rc ? rc : map_entries(k->blocked_fd, blocked);
}

/* The kernel memory behind a bpf map or program fd, as the kernel accounts
 * it (the "memlock" line of its fdinfo). */
static int fd_memlock(int fd, uint64_t *out)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "re");
    if (!f) return pc__from_errno(errno);
    int rc = PC_ENOSYS; /* no memlock line */
    unsigned long long v;
    while (rc != 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "memlock: %llu", &v) == 1) {
            *out = v;
            rc = 0;
        }
    fclose(f);
    return rc;
}

int kf_ebpf_kernel_bytes(const kf_ebpf_t *k, uint64_t *bytes)
{
    if (!k || !k->cur || !bytes) return PC_EINVAL;
    uint64_t sum, v;
    int rc = fd_memlock(k->cur->prog_fd, &sum);
    struct bpf_map *m;
    /* the object's maps include the shared ones (reused into every object) */
    bpf_object__for_each_map(m, k->cur->obj)
    {
        int fd = bpf_map__fd(m); /* < 0: a map the object did not create */
        if (rc == 0 && fd >= 0 && (rc = fd_memlock(fd, &v)) == 0) sum += v;
    }
    if (rc == 0) *bytes = sum;
    return rc;
}

int kf_ebpf_source_bytes(const kf_ebpf_t *k, uint64_t *bytes)
{
    if (!k || !bytes) return PC_EINVAL;
    uint64_t b = 0, v = 0;
    int rc = fd_memlock(k->buckets_fd, &b);
    if (rc == 0) rc = fd_memlock(k->blocked_fd, &v);
    if (rc == 0) *bytes = b + v;
    return rc;
}

void kf_ebpf_close(kf_ebpf_t *k, int fd)
{
    if (!k) return;
    if (fd >= 0) {
        int zero = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_DETACH_BPF, &zero, sizeof zero) != 0)
            PC_LOGD("kfilter: SO_DETACH_BPF: %s", strerror(errno));
    }
    obj_free(k->cur);
    close_fds(k);
    pc__free(k);
}
