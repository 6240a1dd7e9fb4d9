#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The summary table of a side-by-side benchmark (bench/*_vs_*.sh).

    bench/summary.py RESULTS PEERS TABLE

RESULTS: lines "metric<TAB>server<TAB>round<TAB>value" (bench_record in
bench/lib.sh; "nan": not measured), pc-http's server name is "pc"; other pc-http set-ups, "pcb"
(http_vs_peers.sh: with accept batching), "pcn" (without the accept data
wait) and "pcd" (default scheduling), when present, get a table each.
PEERS: the peers' names, comma-separated ("nginx,haproxy"). TABLE: one
line per metric, "key|label|higher|targets" where higher is 1 when more is better and the
targets are the ratios pc/peer the issue asks for, either by peer name
("nginx=0.75,haproxy=1.0"; a peer not named has none) or one per peer in
PEERS' order ("0.75,-"); "-" alone: none. "#" lines are comments.

Per server it prints the median over rounds; per peer the median over rounds
of pc / peer *within* the round: a round's runs are back to back, so
background load on a shared machine cancels better than in a ratio of
medians. Against each target it says met or NOT met (by that median) and in
how many rounds the round's own ratio met it. It measures and never fails on
a figure.
"""
import statistics
import sys


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    res, peers, spec = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    vals, by_round = {}, {}
    for line in open(res):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            continue
        metric, srv, rnd, v = parts
        try:
            x = float(v)
        except ValueError:
            continue
        if x != x:  # nan: not measured
            continue
        vals.setdefault((metric, srv), []).append(x)
        by_round[(metric, srv, rnd)] = x
    rounds = sorted({r for (_, _, r) in by_round})

    def med(key, srv):
        v = vals.get((key, srv))
        if not v:
            return "-"
        m = statistics.median(v)
        return "%.1f" % m if abs(m) >= 10 else "%.3g" % m  # wake-ups per unit: 0.0xx

    def ratio(key, pc, peer):
        """The per-round ratios pc / peer (empty when not measured). The
        scripts record nan for a run that measured nothing (no request
        served, a server that died stops them), so pc's 0 is a figure: less
        than a clock tick of CPU, as for denied attempts the kernel filter
        drops, which must meet a lower-is-better target, not drop it. A
        peer's 0 leaves the round out (no ratio to it)."""
        return [by_round[(key, pc, r)] / by_round[(key, peer, r)] for r in rounds
                if by_round.get((key, pc, r)) is not None and by_round.get((key, peer, r))]

    print("summary: per server the median over rounds; ratio = median over rounds of")
    print("pc-http / peer within the round (back-to-back runs: background load cancels better)")
    for pc, name in (("pc", "pc-http"), ("pcb", "pc-batch"), ("pcn", "pc-no-wait"),
                     ("pcd", "pc-sched-default")):
        if any(s == pc for (_, s) in vals):
            table(pc, name, peers, spec, vals, med, ratio)
    return 0


# the peers a table may name (a peer of a run is any subset of them)
KNOWN_PEERS = ("nginx", "nginxd", "haproxy")


def parse_targets(text, peers):
    """One target (a float, or None) per peer, from "name=x,..." or "x,-,..."."""
    items = [t for t in text.split(",") if t and t != "-"]
    if any("=" in t for t in items):
        named = dict((k, float(v)) for k, v in (t.split("=", 1) for t in items))
        unknown = sorted(set(named) - set(KNOWN_PEERS))
        if unknown:
            sys.stderr.write("summary.py: targets for unknown peers %s\n" % ", ".join(unknown))
        return [named.get(p) for p in peers]
    out = [None if t == "-" else float(t) for t in text.split(",")]
    return (out + [None] * len(peers))[:len(peers)]


def table(pc, name, peers, spec, vals, med, ratio):
    fmt = "%-40s" + " %9s" * (1 + len(peers)) + " %10s" * len(peers) + "  %s"
    print(fmt % (("metric", name) + tuple(peers) +
                 tuple("pc/" + p for p in peers) + ("target",)))
    for line in open(spec):
        if not line.strip() or line.startswith("#"):
            continue
        key, label, higher, targets = line.rstrip("\n").split("|")
        if not vals.get((key, pc)):
            continue
        higher = higher == "1"
        targets = parse_targets(targets, peers)
        per_round = [ratio(key, pc, p) for p in peers]
        ratios = [statistics.median(v) if v else None for v in per_round]
        notes = []
        for peer, r, v, t in zip(peers, ratios, per_round, targets):
            if t is None or r is None:
                continue
            def meets(x):
                return x >= t if higher else x <= t
            # the median decides; how many rounds met it shows how firm that is
            notes.append("%s %.2f x %s: %s (%d of %d rounds)" %
                         (">=" if higher else "<=", t, peer, "met" if meets(r) else "NOT met",
                          sum(1 for x in v if meets(x)), len(v)))
        print(fmt % ((label, med(key, pc)) + tuple(med(key, p) for p in peers) +
                     tuple("%.2f" % r if r is not None else "-" for r in ratios) +
                     ("; ".join(notes),)))


if __name__ == "__main__":
    sys.exit(main())
