/* SPDX-License-Identifier: MIT */
/* The listener's kernel filter on Linux: choose the tier by trying (eBPF via
 * kfilter_ebpf.h, classic BPF compiled by src/filter/cbpf_compile.c and
 * attached with SO_ATTACH_FILTER), replace the program on rule reloads
 * (SO_ATTACH_* replaces atomically), detach on close. Every outcome that is
 * less than asked is logged when it changes and kept for
 * pc_server_listener_filter. docs/kernel-filter.md has the policy. */
#include "server.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/errno_map.h"
#include "core/log.h"
#include "filter/cbpf_compile.h"
#include "kfilter_ebpf.h"

_Static_assert(sizeof(struct sock_filter) == sizeof(cbpf_insn_t), "cbpf_insn_t is sock_filter");

/* A per-source rate or maximum is configured. */
static int per_source_limits(const pc_server_t *s)
{
    return s->cfg.per_source_rate > 0 || s->cfg.per_source_max > 0;
}

/* Per-source limits configured, but some sources are exempt from them: the
 * addresses of trusted PROXY sources (each carries all its clients, who are
 * limited one by one once the header is read) and, with allow_exempts, the
 * sources an allow rule matches. The eBPF program cannot tell those apart
 * from others, so it must not apply the limits on SYNs: they stay with the
 * accept thread and the second verdict, which can. */
static int per_source_exempts(const pc_server_t *s)
{
    return per_source_limits(s) && (s->cfg.proxy_trusted != NULL || s->cfg.allow_exempts);
}

/* The eBPF tier drops the SYNs of sources holding per_source_max: the
 * accept thread marks them in its blocked map, which is made for it (one
 * condition for the map's size and for every mark). */
static int max_in_kernel(const pc_server_t *s)
{
    return s->cfg.per_source_max > 0 && !per_source_exempts(s);
}

static void ebpf_config(const pc_server_t *s, kf_ebpf_config_t *c)
{
    memset(c, 0, sizeof *c);
    if (!per_source_exempts(s)) { /* else rate 0: no rate on SYNs */
        c->rate = s->cfg.per_source_rate;
        c->burst = s->cfg.per_source_burst; /* pc_server_create set burst 0's default */
    }
    c->source_prefix_v4 = (uint8_t)s->cfg.source_prefix_v4;
    c->source_prefix_v6 = (uint8_t)s->cfg.source_prefix_v6;
    c->source_entries = s->cfg.source_table_size;
    c->block_sources = max_in_kernel(s);
    c->shadow = s->cfg.shadow;
}

/* Family and dual-stack-ness of the listening socket. */
static void sock_family(int fd, int *family, int *dual)
{
    struct sockaddr_storage ss;
    *family = 4;
    *dual = 0;
    if (sock_local_addr(fd, &ss) == 0 && ss.ss_family == AF_INET6) {
        *family = 6;
        int v6only = 1;
        socklen_t l = sizeof v6only;
        if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l) == 0) *dual = !v6only;
    }
}

/* Take whatever filter fd has off it (classic or eBPF: one option); 0, or
 * -1 with errno (ENOENT: it had none). Needs no privilege. */
static int detach_filter(int fd)
{
    int zero = 0; /* the kernel wants an int's length, read or not */
    return setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero);
}

/* Compile rules and attach them to fd; replacing: a classic program is
 * attached now. The kernel charges the new program to the socket's option
 * memory (net.core.optmem_max) before it uncharges the old one: when the
 * two do not fit together (128 KiB held an IPv6 program of about 2200
 * instructions twice, not one of 4000), the old one is detached and the new
 * one attached. Meanwhile SYNs reach the accept thread, which judges them
 * with the set in force (pc_server_set_rules swaps it after the kernel). */
static int cbpf_attach(int fd, const pc_rules_t *rules, int replacing, unsigned *insns, char *why,
                       size_t n)
{
    int family, dual;
    sock_family(fd, &family, &dual);
    cbpf_prog_t p;
    int rc = cbpf_compile(rules, family, dual, &p);
    if (rc == PC_ENOBUFS) {
        snprintf(why, n, "cbpf: the rule set needs %s%zu instructions, more than %d",
                 p.len_at_least ? "at least " : "", p.len, CBPF_MAXINSNS);
        return rc;
    }
    if (rc < 0) {
        snprintf(why, n, "cbpf: %s", pc_strerror(rc));
        return rc;
    }
    struct sock_fprog fp;
    fp.len = (unsigned short)p.len;
    fp.filter = (struct sock_filter *)(void *)p.insn;
    int ok = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) == 0;
    if (!ok && errno == ENOMEM && replacing) {
        if (detach_filter(fd) == 0)
            ok = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) == 0;
        else
            errno = ENOMEM;
    }
    if (!ok) {
        rc = pc__from_errno(errno);
        snprintf(why, n, "cbpf: SO_ATTACH_FILTER: %s", pc_strerror(rc));
    } else {
        *insns = (unsigned)p.len;
    }
    cbpf_prog_free(&p);
    return rc;
}

static void log_state(const pc_server_t *s, int fd, const kfilter_t *kf)
{
    char name[64];
    listener_name(fd, NULL, name, sizeof name);
    pc_kernel_filter_t want = s->cfg.kernel_filter;
    char tier[48];
    if (kf->tier == PC_KERNEL_FILTER_CBPF)
        snprintf(tier, sizeof tier, "cbpf (%u insns)", kf->insns);
    else if (kf->tier == PC_KERNEL_FILTER_OFF)
        snprintf(tier, sizeof tier, "off (verdicts after the handshake)");
    else
        snprintf(tier, sizeof tier, "%s", pc_kernel_filter_name(kf->tier));
    if (!kf->why[0]) {
        if (want == PC_KERNEL_FILTER_OFF)
            PC_LOGD("listener %s: kernel filter off (configured)", name);
        else
            PC_LOGI("listener %s: kernel filter %s", name, tier);
    } else if (want == PC_KERNEL_FILTER_AUTO) {
        PC_LOGI("listener %s: kernel filter %s; %s", name, tier, kf->why);
    } else {
        PC_LOGW("listener %s: kernel filter %s refused, running %s: %s", name,
                pc_kernel_filter_name(want), tier, kf->why);
    }
}

/* Append src to the string in dst (cap bytes), cutting what does not fit. */
static void cat(char *dst, size_t cap, const char *src)
{
    size_t d = strlen(dst), n = strlen(src);
    if (d + 1 >= cap) return;
    if (n > cap - d - 1) n = cap - d - 1;
    memcpy(dst + d, src, n);
    dst[d + n] = 0;
}

/* Add the SYN counters of k to c (in KF_COUNTS order; kfilter_counts). */
static void kf_counts_add(uint64_t c[KF_COUNTS], kf_ebpf_t *k)
{
    kf_ebpf_stats_t st;
    kf_ebpf_stats(k, &st);
    c[0] += st.syn_seen;
    c[1] += st.dropped_rules;
    c[2] += st.dropped_rate;
    c[3] += st.dropped_max;
    c[4] += st.would_drop;
    c[5] += st.syn_retransmits;
}

/* Take a listener's eBPF tier out of service (kf_lock held): fold its drops
 * into rules (the set it was built from), keep its SYN counters and close
 * it. The counters move to kf_gone and the pointer goes in one step under
 * kf_mu, so kfilter_counts counts them once and kf_mu's users never reach a
 * closed object. fd: the listening socket, or -1 when it is gone. */
static void ebpf_drop(pc_server_t *s, kfilter_t *kf, pc_rules_t *rules, int fd)
{
    kf_ebpf_t *k = kf->ebpf;
    if (!k) return;
    kf_ebpf_collect_hits(k, rules);
    pc__mutex_lock(&s->kf_mu);
    kf_counts_add(s->kf_gone, k);
    kf->ebpf = NULL;
    pc__mutex_unlock(&s->kf_mu);
    kf->kernel_bytes = kf->source_bytes = 0;
    kf_ebpf_close(k, fd);
}

static void mark_source(void *arg, const addr_t *key)
{
    kf_ebpf_block_source(arg, key, 1);
}

/* Put a newly opened eBPF object in service on listener kf (kf_lock held).
 * A new program starts with no marks: when the tier comes back on a
 * reload, the sources holding their maximum meanwhile get theirs again
 * (else their SYNs would pass until their count next changes). The count
 * of eBPF listeners goes up in the same kf_mu section, so an accept or a
 * close from now on takes kf_mu and marks for itself (settle recomputes the
 * same count). */
static void ebpf_publish(pc_server_t *s, kfilter_t *kf, kf_ebpf_t *k)
{
    pc__mutex_lock(&s->kf_mu);
    kf->ebpf = k;
    atomic_fetch_add(&s->kf_ebpf, 1);
    tracker_t *t = filter_tracker(s->filter);
    if (max_in_kernel(s) && t) tracker_each_at(t, s->cfg.per_source_max, mark_source, k);
    pc__mutex_unlock(&s->kf_mu);
}

/* Choose and install the tier for rules on fd; old: the set the kernel holds
 * now (reload), for the eBPF tier's counters. */
static void choose(pc_server_t *s, kfilter_t *kf, int fd, pc_rules_t *old, const pc_rules_t *rules)
{
    pc_kernel_filter_t want = s->cfg.kernel_filter, was = kf->tier;
    char e1[160] = "", e2[160] = "";
    kf->tier = PC_KERNEL_FILTER_OFF;
    kf->insns = 0;
    kf->kernel_bytes = kf->source_bytes = 0;
    /* the eBPF swap failed: the old set must leave the kernel (user space
     * swaps), but only once what replaces it is on the socket, so that no
     * moment passes without a program (a classic attach replaces it) */
    int drop = 0;
    if (want == PC_KERNEL_FILTER_AUTO || want == PC_KERNEL_FILTER_EBPF) {
        int rc;
        if (kf->ebpf) {
            /* the long part (new maps, program, verifier) runs beside the
             * live program; kf_mu's users go on with the object meanwhile */
            rc = kf_ebpf_set_rules(kf->ebpf, old, rules, e1, sizeof e1);
            drop = rc < 0;
        } else {
            kf_ebpf_config_t c;
            ebpf_config(s, &c);
            /* one rate and one set of marks per source for the server, as
             * in user space: the other listeners' source maps, if any (kf_lock
             * held: their objects stay) */
            for (int i = 0; i < s->nlisteners && !c.share; i++)
                if (&s->listeners[i].kf != kf) c.share = s->listeners[i].kf.ebpf;
            kf_ebpf_t *k = NULL;
            rc = kf_ebpf_open(&c, rules, fd, &k, e1, sizeof e1);
            if (rc == 0) ebpf_publish(s, kf, k);
        }
        if (rc == 0) {
            kf->tier = PC_KERNEL_FILTER_EBPF;
            kf->why[0] = 0;
            /* read once here (a few /proc reads), not by every
             * pc_server_listener_filter under kf_lock; 0 if unreadable */
            if (kf_ebpf_kernel_bytes(kf->ebpf, &kf->kernel_bytes) != 0 ||
                kf_ebpf_source_bytes(kf->ebpf, &kf->source_bytes) != 0 ||
                kf->source_bytes > kf->kernel_bytes)
                kf->kernel_bytes = kf->source_bytes = 0;
            return;
        }
        if (strncmp(e1, "ebpf", 4) != 0) { /* prefix the reason with its tier */
            char t[sizeof e1] = "ebpf: ";
            cat(t, sizeof t, e1);
            memcpy(e1, t, sizeof e1);
        }
    }
    if (want == PC_KERNEL_FILTER_AUTO || want == PC_KERNEL_FILTER_CBPF) {
        if (s->cfg.shadow) {
            snprintf(e2, sizeof e2,
                     "cbpf: not used in shadow mode (a classic program cannot "
                     "count what it would drop)");
        } else if (cbpf_attach(fd, rules, was == PC_KERNEL_FILTER_CBPF, &kf->insns, e2,
                               sizeof e2) == 0) {
            if (drop) ebpf_drop(s, kf, old, -1); /* replaced on the socket: no detach */
            kf->tier = PC_KERNEL_FILTER_CBPF;
            snprintf(kf->why, sizeof kf->why, "%s", want == PC_KERNEL_FILTER_AUTO ? e1 : "");
            return;
        }
    }
    if (drop) ebpf_drop(s, kf, old, fd); /* nothing replaces it: detached */
    if (was == PC_KERNEL_FILTER_CBPF) {  /* take the old program off (needs no privilege) */
        if (detach_filter(fd) != 0 && errno != ENOENT) /* ENOENT: cbpf_attach took it off */
            PC_LOGE("kernel filter: the old classic program could not be detached (%s); "
                    "it stays in force with the previous rules",
                    pc_strerror(pc__from_errno(errno)));
    }
    kf->why[0] = 0;
    if (want == PC_KERNEL_FILTER_OFF) return;
    cat(kf->why, sizeof kf->why, e1);
    if (e1[0] && e2[0]) cat(kf->why, sizeof kf->why, "; ");
    cat(kf->why, sizeof kf->why, e2);
}

/* The lock-free summary of the listeners' tiers (kf_lock held): listeners
 * with eBPF, and the weakest tier (EBPF < CBPF < OFF), OFF without
 * listeners. nlisteners: the first ones to count (one being set up included). */
static void kf_summary(pc_server_t *s, int nlisteners)
{
    int n = 0, counted = 0;
    uint64_t bytes = 0, shared = 0;
    pc_kernel_filter_t weakest = nlisteners ? PC_KERNEL_FILTER_EBPF : PC_KERNEL_FILTER_OFF;
    for (int i = 0; i < nlisteners; i++) {
        n += s->listeners[i].kf.ebpf != NULL;
        bytes += s->listeners[i].kf.kernel_bytes;
        if (s->listeners[i].kf.source_bytes) {
            shared = s->listeners[i].kf.source_bytes;
            counted++;
        }
        if (s->listeners[i].kf.tier > weakest) weakest = s->listeners[i].kf.tier;
    }
    /* every eBPF listener counts the source maps they share: once here */
    if (counted > 1) bytes -= (uint64_t)(counted - 1) * shared;
    atomic_store(&s->kf_ebpf, n);
    atomic_store(&s->kf_weakest, (int)weakest);
    atomic_store(&s->kf_kernel_bytes, bytes);
}

/* Log when the tier or its reason changed (once per listener and change). */
static void settle(pc_server_t *s, kfilter_t *kf, int fd, pc_kernel_filter_t tier0,
                   const char *why0, int nlisteners)
{
    kf_summary(s, nlisteners);
    if (kf->logged && kf->tier == tier0 && strcmp(kf->why, why0) == 0) return;
    log_state(s, fd, kf);
    kf->logged = 1;
}

int kfilter_attach(pc_server_t *s, listener_t *l, sock_t fd, const pc_rules_t *rules)
{
    memset(&l->kf, 0, sizeof l->kf);
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    /* before any program is attached (here or by a reload; the setting is
     * the server's): see kfilter_accepted */
    atomic_store(&l->kf_inherit, s->cfg.kernel_filter != PC_KERNEL_FILTER_OFF);
    choose(s, &l->kf, fd, NULL, rules);
    settle(s, &l->kf, fd, PC_KERNEL_FILTER_OFF, "", l->idx + 1); /* l is being added */
    if (l->kf.tier == PC_KERNEL_FILTER_EBPF && per_source_exempts(s) && !s->kf_exempt_logged) {
        s->kf_exempt_logged = 1; /* once per server */
        PC_LOGI("kernel filter: per-source limits are not applied to SYNs (%s exempt from "
                "them and the eBPF program cannot tell them apart); the accept thread and "
                "the PROXY second verdict apply them",
                s->cfg.proxy_trusted ? "trusted PROXY sources are"
                                     : "allow_exempts makes allowed sources");
    }
    return 0;
}

int kfilter_per_source_in_kernel(const pc_server_t *s, const listener_t *l)
{
    return l->kf.tier == PC_KERNEL_FILTER_EBPF && per_source_limits(s) && !per_source_exempts(s);
}

void kfilter_reload(pc_server_t *s, listener_t *l, pc_rules_t *old, const pc_rules_t *rules)
{
    if (l->fd == SOCK_INVALID || s->cfg.kernel_filter == PC_KERNEL_FILTER_OFF) return;
    char why0[sizeof l->kf.why];
    memcpy(why0, l->kf.why, sizeof why0);
    pc_kernel_filter_t tier0 = l->kf.tier;
    choose(s, &l->kf, l->fd, old, rules);
    settle(s, &l->kf, l->fd, tier0, why0, s->nlisteners);
}

void kfilter_detach(pc_server_t *s, listener_t *l)
{
    ebpf_drop(s, &l->kf, filter_rules_peek(s->filter), l->fd); /* fd -1: the socket is gone */
    if (l->fd != SOCK_INVALID && l->kf.tier == PC_KERNEL_FILTER_CBPF) (void)detach_filter(l->fd);
    /* nothing in force any more: the stats and pc_server_listener_filter say
     * so (they went on reporting the tier after the stop) */
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    snprintf(l->kf.why, sizeof l->kf.why, "the listener is closed");
    l->kf.insns = 0;
    l->kf.kernel_bytes = l->kf.source_bytes = 0;
    kf_summary(s, s->nlisteners);
}

void kfilter_accepted(listener_t *l, sock_t fd)
{
    /* one system call per connection (~0.8 us here), against the program's
     * run on each segment received and a rule set per reload kept in the
     * kernel; ENOENT: the listener had no program when it was accepted */
    if (atomic_load_explicit(&l->kf_inherit, memory_order_relaxed)) (void)detach_filter(fd);
}

void kfilter_source_changed(pc_server_t *s, const struct sockaddr *peer)
{
    if (!max_in_kernel(s) || atomic_load_explicit(&s->kf_ebpf, memory_order_relaxed) == 0) return;
    tracker_t *t = filter_tracker(s->filter);
    addr_t a;
    if (!t || addr_from_sockaddr(peer, &a) != 0) return;
    /* kf_mu, not kf_lock: a rule swap compiling meanwhile must not stall the
     * accept thread and the workers; the objects stay theirs (a swap
     * replaces the program inside them, not the maps this touches) */
    pc__mutex_lock(&s->kf_mu);
    /* read under the lock: whichever call comes last saw every change before it */
    int block = tracker_count(t, &a) >= s->cfg.per_source_max;
    addr_mask(&a, a.family == 4 ? s->cfg.source_prefix_v4 : s->cfg.source_prefix_v6);
    for (int i = 0; i < s->nlisteners; i++) {
        kf_ebpf_t *k = s->listeners[i].kf.ebpf;
        if (k) kf_ebpf_block_source(k, &a, block);
    }
    pc__mutex_unlock(&s->kf_mu);
}

void kfilter_collect_hits(pc_server_t *s)
{
    if (atomic_load_explicit(&s->kf_ebpf, memory_order_relaxed) == 0) return;
    /* A swap (or a listener's set-up) is under way: its program and the set
     * in force may not match, and it folds the old program's drops itself.
     * Waiting would stall the caller (pc-http's /metrics, on a worker) for
     * the whole compile. Any other holder of kf_lock holds it briefly
     * (pc_server_listener_filter, a listener's close): wait for it. */
    while (!pc__mutex_trylock(&s->kf_lock)) {
        if (atomic_load(&s->kf_long)) return;
        pc__sleep_ms(0);
    }
    pc_rules_t *r = filter_rules_peek(s->filter); /* the set the kernel holds (kf_lock) */
    for (int i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].kf.ebpf) kf_ebpf_collect_hits(s->listeners[i].kf.ebpf, r);
    pc__mutex_unlock(&s->kf_lock);
}

void kfilter_counts(pc_server_t *s, pc_server_stats_t *out)
{
    uint64_t c[KF_COUNTS];
    pc__mutex_lock(&s->kf_mu); /* not kf_lock: never waits for a rule swap */
    memcpy(c, s->kf_gone, sizeof c);
    for (int i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].kf.ebpf) kf_counts_add(c, s->listeners[i].kf.ebpf);
    pc__mutex_unlock(&s->kf_mu);
    out->kernel_syn_seen = c[0];
    out->kernel_dropped_rules = c[1];
    out->kernel_dropped_rate = c[2];
    out->kernel_dropped_max = c[3];
    out->kernel_would_drop = c[4];
    out->kernel_syn_retransmits = c[5];
}
