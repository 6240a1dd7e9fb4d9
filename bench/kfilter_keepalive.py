#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Keep-alive cost of the listener's kernel filter (issue 11, requirement 3).

    kfilter_keepalive.py BUILD_DIR [--rounds N] [--seconds S] [--threads T]
                         [--tiers off,cbpf,ebpf]

Accepted sockets inherit the listening socket's filter, so every packet of
every connection runs it; the classic program lets any packet with ACK set
leave after 3 instructions, the eBPF program after its first test of the TCP
flags. This measures what that costs: pc-http with the issue's rules file,
each of --tiers (`--kernel-filter T`; default off, cbpf and ebpf), in rounds
whose order rotates, of `wrk -t2 -c100 -dS http://127.0.0.1:PORT/`; server
CPU (utime + stime from /proc) per request, median and best round of each,
and the ratios to off. Needs root for the kernel tiers. Prints figures, never
fails on them.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

RULES = "deny 127.0.0.2/32\ndeny 127.0.9.0/24\nallow 127.0.0.0/8\n"


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def one_round(args, rules, tier):
    srv = subprocess.Popen([os.path.join(args.build, "bin", "pc-http"), "--listen", "127.0.0.1:0",
                            "--threads", str(args.threads), "--rules", rules,
                            "--kernel-filter", tier],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port, kline = None, ""
        for line in srv.stdout:
            m = re.match(r"listening on \S+:(\d+)$", line.strip())
            if m:
                port = int(m.group(1))
            if line.startswith("kernel filter:"):
                kline = line.strip()
                break
        url = "http://127.0.0.1:%d/" % port
        subprocess.run(["wrk", "-t2", "-c100", "-d1s", url], capture_output=True)  # warm-up
        hz = os.sysconf("SC_CLK_TCK")
        c0 = cpu_ticks(srv.pid)
        out = subprocess.run(["wrk", "-t2", "-c100", "-d%ds" % args.seconds, url],
                             capture_output=True, text=True).stdout
        c1 = cpu_ticks(srv.pid)
        m = re.search(r"(\d+) requests in", out)
        reqs = int(m.group(1)) if m else 0
        return kline, reqs, (c1 - c0) / hz
    finally:
        srv.terminate()
        srv.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiers", default="off,cbpf,ebpf",
                    help="comma-separated --kernel-filter values; the first is the reference")
    args = ap.parse_args()
    tiers = args.tiers.split(",")
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(RULES)
        rules = f.name
    res = {t: [] for t in tiers}
    try:
        for r in range(args.rounds):
            for tier in tiers[r % len(tiers):] + tiers[:r % len(tiers)]:
                kline, reqs, cpu = one_round(args, rules, tier)
                us = cpu / reqs * 1e6 if reqs else float("nan")
                res[tier].append((us, reqs / args.seconds))
                print("round %d %-4s %-40s %9.0f req/s  %.3f us CPU/request"
                      % (r + 1, tier, kline, reqs / args.seconds, us))
                sys.stdout.flush()
    finally:
        os.unlink(rules)
    med = {t: statistics.median(u for u, _ in v) for t, v in res.items()}
    rps = {t: statistics.median(q for _, q in v) for t, v in res.items()}
    # the least disturbed round of each (other load only ever adds CPU)
    low = {t: min(u for u, _ in v) for t, v in res.items()}
    ref = tiers[0]
    for what, d, fmt in (("median CPU/request", med, "%.3f us"), ("median req/s", rps, "%.0f"),
                         ("best-round CPU/request", low, "%.3f us")):
        print("%s (ratio to %s): %s" % (what, ref, ", ".join(
            "%s %s (%.3f)" % (t, fmt % d[t], d[t] / d[ref]) for t in tiers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
