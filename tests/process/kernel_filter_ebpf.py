#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: the eBPF tier of the listener's kernel filter, end to end.

    kernel_filter_ebpf.py BIN_DIR [--backend NAME] [--budget S]

pc-http with --kernel-filter ebpf (root), checks that:
  1. --per-source-rate 20/20: 60 connects at once from 127.0.0.11 (0.6 s to
     answer): 15-30 are served, every other one gets no SYN-ACK (no reset);
     /metrics counts the rest as kernel rate drops;
  2. --per-source-max 5: with 5 connections of 127.0.0.12 held, 3 more get
     no SYN-ACK; once 3 held ones close, 3 new ones are served; /metrics
     counts kernel max drops;
  3. deny rules: 127.0.0.2 and 127.0.9.7 get no SYN-ACK and the per-rule hit
     counters in /metrics (pc_server_top_rules) include those kernel drops;
     SIGHUP adding "deny 127.0.0.6" drops 127.0.0.6 in the kernel and counts
     it, the older hits kept; pc-stress from 127.0.0.2 (-c 3, 1 s) reports
     its 3 connects as unconnected, not as 0 of everything;
  4. shadow mode: a denied source is served, the kernel counts it;
  5. a set too large for classic BPF (100000 prefixes), pc-echo as nobody
     with only CAP_NET_ADMIN (no CAP_BPF): off, with both tiers' reasons
     logged; a denied client is closed after the handshake;
  6. --per-source-rate 0.01/1 (one token, no refill during the test): a SYN
     from 127.0.0.13 sent twice by a raw socket (same port and initial
     sequence number: a retransmission) passes both times, the second
     without a token; a SYN of a new attempt from there is dropped: /metrics
     counts one retransmission and one rate drop.

Needs root (exits 77, "skipped", otherwise) and an eBPF tier built in (77
with the reason otherwise); setpriv for case 5. Bounded by an overall alarm;
servers are killed on every exit path. Python 3 standard library only.
"""

import argparse
import os
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request

import kernel_filter as kf
from proclib import GET_ROOT, SKIP, Fail, Server, Skip, now, run_checks, stress_json  # noqa: E402


def http_argv(args, rules=None, extra=()):
    argv = [os.path.join(args.bin_dir, "pc-http"), "--listen", "127.0.0.1:0", "--threads", "2",
            "--kernel-filter", "ebpf"]
    if rules:
        argv += ["--rules", rules]
    if args.backend:
        argv += ["--backend", args.backend]
    return argv + list(extra)


def start(argv):
    srv = Server(argv)
    port = srv.wait_listening(15)
    line = kf.kernel_line(srv)
    if not line.startswith("kernel filter: ebpf"):
        srv.kill()
        if "not built" in line:
            raise Skip(line)
        raise Fail("asked the eBPF tier, got: " + line)
    # the kernel memory its maps and program hold, as the kernel accounts it
    m = re.search(r"\(([0-9.]+) MiB of kernel memory\)", line)
    if not m or float(m.group(1)) <= 0:
        srv.kill()
        raise Fail("no kernel memory on the kernel filter line: " + line)
    return srv, port


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name, label_re=""):
    """Sum of the samples of name whose labels match label_re."""
    total, seen = 0, False
    for line in text.splitlines():
        m = re.match(r"%s(\{[^}]*\})? (\d+)$" % re.escape(name), line)
        if m and re.search(label_re, m.group(1) or ""):
            total += int(m.group(2))
            seen = True
    if not seen:
        raise Fail("no %s{%s} in /metrics:\n%s" % (name, label_re, text))
    return total


def get(sock):
    """One GET / on a connected socket: True when answered 200."""
    try:
        sock.settimeout(5)
        sock.sendall(GET_ROOT)
        return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def burst(src, port, n, wait):
    """n connects at once from src; returns (served, unanswered, other)."""
    socks, state = [], {}
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((src, 0))
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    t_end = now() + wait
    pending = list(socks)
    while pending and now() < t_end:
        _, w, _ = select.select([], pending, [], max(0.0, t_end - now()))
        for s in w:
            state[s] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            pending.remove(s)
    served = other = 0
    for s in socks:
        if s not in state:
            continue
        if state[s] == 0:
            s.setblocking(True)
            served += get(s)
        else:
            other += 1
    unanswered = n - len(state)
    for s in socks:
        s.close()
    return served, unanswered, other


def case_rate(args, tmp, failures):
    srv, port = start(http_argv(args, extra=["--per-source-rate", "20/20"]))
    try:
        served, unanswered, other = burst("127.0.0.11", port, 60, 0.6)
        print("rate 20/20, 60 at once: %d served, %d unanswered, %d other"
              % (served, unanswered, other))
        if not 15 <= served <= 30:
            failures.append("rate: %d of 60 served, expected 15-30" % served)
        if other:
            failures.append("rate: %d connects refused or reset (expected silence)" % other)
        if served + unanswered != 60:
            failures.append("rate: %d served + %d unanswered != 60" % (served, unanswered))
        m = metrics(port)
        if metric(m, "pc_kernel_dropped_total", 'cause="rate"') < unanswered:
            failures.append("rate: /metrics counts fewer kernel rate drops than %d:\n%s"
                            % (unanswered, m))
        # a rate makes the bucket map full size: 65 536 keys and values of
        # 64 bytes, 4 MiB at least in the kernel's account
        kb = metric(m, "pc_kernel_filter_bytes")
        print("rate: pc_kernel_filter_bytes %d (%.1f MiB)" % (kb, kb / 1048576.0))
        if kb < 4 << 20:
            failures.append("rate: pc_kernel_filter_bytes %d, under the bucket map's 4 MiB" % kb)
    finally:
        srv.kill()


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def raw_syn(src, port, sport, isn):
    """One TCP SYN from src:sport with sequence number isn to 127.0.0.1:port,
    through a raw socket (the kernel adds the IP header)."""
    hdr = bytearray(sport.to_bytes(2, "big") + port.to_bytes(2, "big") + isn.to_bytes(4, "big")
                    + bytes(4) + bytes([5 << 4, 0x02]) + (65535).to_bytes(2, "big") + bytes(4))
    pseudo = (socket.inet_aton(src) + socket.inet_aton("127.0.0.1")
              + bytes([0, socket.IPPROTO_TCP]) + len(hdr).to_bytes(2, "big"))
    hdr[16:18] = csum(pseudo + bytes(hdr)).to_bytes(2, "big")
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP) as s:
        s.bind((src, 0))
        s.sendto(bytes(hdr), ("127.0.0.1", 0))


def case_retransmit(args, tmp, failures):
    # one token per source (127.0.0.1's goes to the /metrics request)
    srv, port = start(http_argv(args, extra=["--per-source-rate", "0.01/1"]))
    try:
        # the SYN-ACKs go to ports with no socket: the kernel resets them
        raw_syn("127.0.0.13", port, 40000, 0x12345678)
        time.sleep(0.1)
        raw_syn("127.0.0.13", port, 40000, 0x12345678)  # the same SYN again
        time.sleep(0.1)
        raw_syn("127.0.0.13", port, 40001, 0x12345678)  # a new attempt: no token left
        time.sleep(0.1)
        m = metrics(port)
        retx = metric(m, "pc_kernel_syn_retransmits_total")
        rate = metric(m, "pc_kernel_dropped_total", 'cause="rate"')
        print("a SYN, the same SYN again, a new attempt: %d retransmission(s) passed, "
              "%d rate drop(s)" % (retx, rate))
        if retx != 1 or rate != 1:
            failures.append("retransmit: %d retransmission(s) passed, %d rate drop(s); expected "
                            "1 and 1 (the retransmission free, the new attempt dropped)"
                            % (retx, rate))
    finally:
        srv.kill()


def connect_held(src, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    if not get(s):
        s.close()
        raise Fail("%s: a held connection was not served" % src)
    return s


def case_max(args, tmp, failures):
    srv, port = start(http_argv(args, extra=["--per-source-max", "5"]))
    held = []
    try:
        held = [connect_held("127.0.0.12", port) for _ in range(5)]
        time.sleep(0.5)  # the accept thread marks the source after the 5th (loaded CI)
        for i in range(3):
            kf.expect(failures, "max: extra %d while 5 held" % (i + 1),
                      kf.connect("127.0.0.12", "127.0.0.1", port, kf.DENIED_WAIT), "timeout")
        connect_held("127.0.0.13", port).close()  # another source is served meanwhile
        for s in held[:3]:
            s.close()
        held = held[3:]
        t_end = now() + 5
        got = []
        while len(got) < 3 and now() < t_end:
            try:
                got.append(connect_held("127.0.0.12", port))
            except (OSError, Fail):
                time.sleep(0.2)  # the worker closes, then unmarks
        if len(got) != 3:
            failures.append("max: %d of 3 served once slots freed" % len(got))
        held += got
        m = metrics(port)
        if metric(m, "pc_kernel_dropped_total", 'cause="max"') < 3:
            failures.append("max: /metrics counts fewer than 3 kernel max drops:\n" + m)
    finally:
        for s in held:
            s.close()
        srv.kill()


def hits(m, needle):
    return sum(int(v) for r, v in re.findall(r'pc_rule_hits_total\{rule="([^"]*)"[^}]*\} (\d+)', m)
               if needle in r)


def case_rules(args, tmp, failures):
    rules = os.path.join(tmp, "rules")
    with open(rules, "w") as f:
        f.write(kf.RULES)
    srv, port = start(http_argv(args, rules))
    try:
        for src in ("127.0.0.2", "127.0.0.2", "127.0.9.7"):
            kf.expect(failures, "rules " + src, kf.connect(src, "127.0.0.1", port,
                                                           kf.DENIED_WAIT), "timeout")
        m = metrics(port)
        h2, h9 = hits(m, "127.0.0.2"), hits(m, "127.0.9.0/24")
        if h2 < 2 or h9 < 1:
            failures.append("rules: per-rule hits without the kernel drops (%d, %d):\n%s"
                            % (h2, h9, m))
        if metric(m, "pc_kernel_dropped_total", 'cause="rules"') < 3:
            failures.append("rules: fewer than 3 kernel rule drops in /metrics")
        # a client whose SYNs are dropped: its connects are neither made nor
        # errors; the report says they were in flight
        r = stress_json(args.bin_dir, ["http://127.0.0.1:%d/" % port, "-c", "3", "-t", "1",
                                       "-d", "1", "--source", "127.0.0.2"])
        if r["unconnected"] != 3 or r["connects"] != 0 or r["errors_total"] != 0:
            failures.append("rules: pc-stress from a denied source: unconnected %s, connects %s, "
                            "errors %s (want 3, 0, 0)" % (r["unconnected"], r["connects"],
                                                          r["errors_total"]))
        with open(rules, "w") as f:
            f.write(kf.RULES + "deny 127.0.0.6\n")
        srv.proc.send_signal(signal.SIGHUP)
        if not kf.wait_line(srv, "reloaded 4 rules"):
            failures.append("rules: no reload line:\n" + srv.tail())
        kf.expect(failures, "rules 127.0.0.6 after SIGHUP",
                  kf.connect("127.0.0.6", "127.0.0.1", port, kf.DENIED_WAIT), "timeout")
        m = metrics(port)
        if hits(m, "127.0.0.6") < 1:
            failures.append("rules: the new deny's kernel drop is not in its hits:\n" + m)
        if hits(m, "127.0.0.2") < h2:
            failures.append("rules: hits lost on reload (%d < %d)" % (hits(m, "127.0.0.2"), h2))
        if "tier=\"ebpf\"" not in m:
            failures.append("rules: /metrics does not report the eBPF tier after the reload")
    finally:
        srv.kill()


def case_shadow(args, tmp, failures):
    rules = os.path.join(tmp, "shadow.rules")
    with open(rules, "w") as f:
        f.write(kf.RULES)
    srv, port = start(http_argv(args, rules, ["--shadow"]))
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=("127.0.0.2", 0))
        if not get(s):
            failures.append("shadow: the denied source was not served")
        s.close()
        m = metrics(port)
        if metric(m, "pc_kernel_dropped_total", 'cause="shadow"') < 1:
            failures.append("shadow: the kernel did not count the would-be drop:\n" + m)
        if metric(m, "pc_kernel_dropped_total", 'cause="rules"') != 0:
            failures.append("shadow: the kernel dropped in shadow mode")
    finally:
        srv.kill()


def case_big_nobody(args, tmp, failures):
    rules = os.path.join(tmp, "big.rules")
    with open(rules, "w") as f:
        f.write("deny 127.0.0.2/32\n")
        for i in range(100000):  # isolated /32s (adjacent ones would merge into ranges)
            f.write("deny 10.%d.%d.%d/32\n" % (i >> 15, (i >> 7) & 255, (i & 127) * 2))
    os.chmod(rules, 0o644)
    prefix = kf.NOBODY + ["--inh-caps=+net_admin", "--ambient-caps=+net_admin"]
    srv = Server(kf.echo_argv(args, rules, prefix=prefix))
    try:
        port = srv.wait_listening(20)
        line = kf.kernel_line(srv)
        print("nobody+CAP_NET_ADMIN, 100001 prefixes: " + line)
        if not line.startswith("kernel filter: off: ") or "instructions" not in line or \
                "not permitted" not in line.lower():
            failures.append("big/nobody: expected off, eBPF refused and cBPF too small: " + line)
        kf.expect(failures, "big/nobody 127.0.0.2", kf.connect("127.0.0.2", "127.0.0.1", port, 5),
                  "closed")
        kf.expect(failures, "big/nobody 127.0.0.1", kf.connect("127.0.0.1", "127.0.0.1", port, 5),
                  "ok")
    finally:
        srv.kill()


def run(args):
    failures = []
    tmp = tempfile.mkdtemp(prefix="pc-kfebpf-")
    os.chmod(tmp, 0o755)  # nobody reads the rules file
    try:
        case_rules(args, tmp, failures)
        case_rate(args, tmp, failures)
        case_max(args, tmp, failures)
        case_shadow(args, tmp, failures)
        case_retransmit(args, tmp, failures)
        if shutil.which("setpriv"):
            case_big_nobody(args, tmp, failures)
        else:
            print("setpriv missing: the nobody case is skipped")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir", help="directory holding pc-http and pc-echo (<build>/bin)")
    ap.add_argument("--backend", help="--backend for the servers (default: their own choice)")
    ap.add_argument("--budget", type=int, default=80, help="overall time limit, s")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: kernel_filter_ebpf.py needs root (bpf(), SO_ATTACH_BPF, setpriv)")
        return SKIP
    def run_or_skip():
        try:
            return run(args)
        except Skip as e:
            raise Skip("no eBPF tier: %s" % e)

    return run_checks(run_or_skip, args.budget)

if __name__ == "__main__":
    sys.exit(main())
