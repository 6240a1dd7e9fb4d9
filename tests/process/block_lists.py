#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-echo with block lists as users have them (issue 15).

    block_lists.py BIN_DIR [--lines N] [--backend NAME] [--budget S]

1. Writes a 200k-line deny list the way users build one, by concatenating a
   FireHOL-style netset, a Spamhaus-DROP-style list ("1.2.3.0/24 ; SBL123")
   and their own, so some prefixes appear twice; 127.0.0.2 and 127.0.0.5/32
   are listed (twice each). Starts `pc-echo --deny-list big.txt`, reports the
   time from spawn to "listening on" (reported, not asserted), and checks:
   a connection from 127.0.0.2 and one from 127.0.0.5 are refused (reset or
   closed without an echo), one from 127.0.0.1 is echoed; the duplicates are
   reported once on stderr with both line numbers and counted on the
   "rules:" line; no library info line is printed (no -v).
2. `--rules site.rules` with "allow 127.0.0.2" plus the same list: pc-echo
   exits 1 and its message names both places (site.rules:1 and big.txt:N).
   pc-http with the same list shows pc_rules and pc_rule_duplicates in
   /metrics.
3. `pc-echo -v --deny-list fh.netset`: a FireHOL-shaped netset denying
   127.0.0.3; the netset is rewritten to deny 127.0.0.4 instead and SIGHUP
   reloads it (127.0.0.3 echoed, 127.0.0.4 refused); then a broken netset and
   SIGHUP: "reload refused" naming FILE:LINE, the rules in force kept; then
   the netset truncated to 0 bytes (a file being rewritten in place) and
   SIGHUP: refused as empty, the rules in force kept. With -v the library's
   info lines are printed.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an
overall alarm (default 60 s) ends the run; servers are killed on every exit
path. Python 3 standard library only; Linux (127.0.0.0/8 all local).
"""

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile

from proclib import Fail, Server, http_metrics, now, pdeathsig, run_checks  # noqa: E402

HOST = "127.0.0.1"


def echo_or_refused(port, source, timeout=5.0):
    """'echo' if a connection from source gets its bytes back, 'refused' if it
    is reset or closed first (post-handshake reject) or cannot connect."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        try:
            s.connect((HOST, port))
            s.sendall(b"ping\n")
            data = b""
            while len(data) < 5:
                chunk = s.recv(64)
                if not chunk:
                    return "refused"
                data += chunk
            return "echo" if data == b"ping\n" else "garbled %r" % data
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
            return "refused"
        except socket.timeout:
            return "timeout"
    finally:
        s.close()


def write_big_list(path, lines, rng):
    """FireHOL part, Spamhaus part, own part, concatenated; returns the line
    numbers (1-based) of the entries that list 127.0.0.2 and 127.0.0.5."""
    seen = set()

    def fresh():
        while True:
            p = "%d.%d.%d.0/24" % (rng.randint(1, 126), rng.randint(0, 255), rng.randint(0, 255))
            if p not in seen:
                seen.add(p)
                return p

    out = []
    third = lines // 3
    out.append("#\n# FireHOL-style netset (generated)\n#")
    firehol = [fresh() for _ in range(third)]
    out += firehol
    out.append("; Spamhaus DROP List (generated)\n; Last-Modified: today")
    drop = [fresh() for _ in range(third - 2000)]
    drop += rng.sample(firehol, 2000)  # also listed by the netset
    rng.shuffle(drop)
    out += ["%s ; SBL%d" % (p, 100000 + i) for i, p in enumerate(drop)]
    out.append("# my own")
    own = [fresh() for _ in range(lines - 2 * third - 4000)]
    own += rng.sample(firehol + drop, 4000)
    own += ["127.0.0.2", "127.0.0.5/32", "127.0.0.2/32", "127.0.0.5 ; twice"]
    rng.shuffle(own)
    out += own
    text = "\n".join(out) + "\n"
    with open(path, "w") as f:
        f.write(text)
    where = {}
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("127.0.0."):
            where.setdefault(line.split()[0].split("/")[0], []).append(n)
    return text.count("\n"), where


def run_to_exit(argv, timeout):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, preexec_fn=pdeathsig)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def wait_line(srv, pattern, timeout):
    """Wait until a server output line matches pattern; returns the match."""
    t_end = now() + timeout
    while now() < t_end:
        for line in list(srv.lines):
            m = re.search(pattern, line)
            if m:
                return m
        if not srv.alive():
            break
        import time
        time.sleep(0.05)
    raise Fail("no output line matching %r within %.0f s:\n%s" % (pattern, timeout, srv.tail()))


def run(args, tmp):
    failures = []
    echo = os.path.join(args.bin_dir, "pc-echo")
    # the lists are under test, not the tier: with the kernel filter (root)
    # a denied client would time out instead of being refused
    base = [echo, "--listen", "127.0.0.1:0", "--threads", "2", "--kernel-filter", "off"]
    if args.backend:
        base += ["--backend", args.backend]
    rng = random.Random(15)

    # 1. the big concatenated list
    big = os.path.join(tmp, "big.txt")
    nlines, where = write_big_list(big, args.lines, rng)
    print("list: %d lines (%s)" % (nlines, big))
    t0 = now()
    srv = Server(base + ["--deny-list", big])
    try:
        port = srv.wait_listening(30)
        ready = now() - t0
        print("pc-echo with a %d-line list: listening after %.2f s (target < 2 s)" % (nlines, ready))
        for src, want in (("127.0.0.2", "refused"), ("127.0.0.5", "refused"),
                          ("127.0.0.1", "echo"), ("127.0.0.6", "echo")):
            got = echo_or_refused(port, src)
            if got != want:
                failures.append("big list: from %s: %s, expected %s" % (src, got, want))
        lines = list(srv.lines)
        warn = [l for l in lines if "duplicate rules ignored" in l]
        if len(warn) != 1:
            failures.append("expected one duplicates warning, got %d:\n%s" % (len(warn), srv.tail()))
        elif not re.search(r"first: \S+big\.txt:(\d+): deny \S+, already at line (\d+)$", warn[0]):
            failures.append("duplicates warning without both lines: %r" % warn[0])
        else:
            print("stderr: " + warn[0])
        m = [re.search(r"rules: (\d+) from \S+ \((\d+) duplicate lines ignored\)", l) for l in lines]
        m = [x for x in m if x]
        if not m:
            failures.append("no 'rules: N from FILE (D duplicate lines ignored)' line")
        else:
            rules, dups = int(m[0].group(1)), int(m[0].group(2))
            entries = nlines - 6  # the six header/comment lines
            print("rules %d, duplicates %d, entries %d" % (rules, dups, entries))
            if dups != 6002 or rules + dups != entries:  # 6000 sampled repeats + 2 of 127.*
                failures.append("rules %d, duplicates %d: expected %d and 6002"
                                % (rules, dups, entries - 6002))
        info = [l for l in lines if "portcullis info" in l]
        if info:
            failures.append("library info lines without -v: %r" % info[:3])
    finally:
        srv.kill()

    # 1b. pc-http with the same list: the counts in /metrics
    http = [os.path.join(args.bin_dir, "pc-http"), "--listen", "127.0.0.1:0", "--threads", "2",
            "--kernel-filter", "off"]
    if args.backend:
        http += ["--backend", args.backend]
    srv = Server(http + ["--deny-list", big])
    try:
        port = srv.wait_listening(30)
        text = http_metrics(port, HOST)
        for name, want in (("pc_rules", nlines - 6 - 6002), ("pc_rule_duplicates", 6002)):
            m = re.search(r"^%s (\d+)\r?$" % name, text, re.M)
            print("/metrics: %s" % (m.group(0).strip() if m else name + " missing"))
            if not m or int(m.group(1)) != want:
                failures.append("/metrics: %s is %s, expected %d"
                                % (name, m.group(1) if m else "missing", want))
    finally:
        srv.kill()

    # 2. a conflicting duplicate: both lines named, exit 1
    site = os.path.join(tmp, "site.rules")
    with open(site, "w") as f:
        f.write("allow 127.0.0.2\n")
    rc, out, err = run_to_exit(base + ["--rules", site, "--deny-list", big], 30)
    first_deny = min(where["127.0.0.2"])
    want = "%s:%d: 'deny 127.0.0.2/32' conflicts with 'allow 127.0.0.2/32' at %s:1" % (
        big, first_deny, site)
    print("conflict: exit %d, stderr %r" % (rc, err.strip()))
    if rc != 1:
        failures.append("conflict: exit %d, expected 1" % rc)
    if want not in err:
        failures.append("conflict: stderr %r lacks %r" % (err.strip(), want))
    if "listening on" in out:
        failures.append("conflict: the server started anyway")

    # 3. a netset, reloaded on SIGHUP; a broken one keeps the rules in force
    netset = os.path.join(tmp, "fh.netset")

    def write_netset(body):
        with open(netset + ".tmp", "w") as f:
            f.write("#\n# ipset: test\n# Entries: 3\n#\n" + body)
        os.replace(netset + ".tmp", netset)

    write_netset("10.9.0.0/16\n127.0.0.3\n192.0.2.0/24\n")
    srv = Server(base + ["-v", "--deny-list", netset])
    try:
        port = srv.wait_listening(30)
        for src, want in (("127.0.0.3", "refused"), ("127.0.0.4", "echo")):
            got = echo_or_refused(port, src)
            if got != want:
                failures.append("netset: from %s: %s, expected %s" % (src, got, want))
        try:  # the server's stderr is read by another thread: wait for it
            wait_line(srv, r"portcullis info", 10)
        except Fail:
            failures.append("-v: no library info line printed:\n" + srv.tail())
        write_netset("10.9.0.0/16\n127.0.0.4/32\n192.0.2.0/24 ; listed\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_line(srv, r"reloaded 3 rules from \S+fh\.netset$", 10)
        for src, want in (("127.0.0.3", "echo"), ("127.0.0.4", "refused")):
            got = echo_or_refused(port, src)
            if got != want:
                failures.append("after reload: from %s: %s, expected %s" % (src, got, want))
        write_netset("127.0.0.3\n127.0.0.300\n")
        srv.proc.send_signal(signal.SIGHUP)
        m = wait_line(srv, r"reload refused, rules in force kept: (\S+fh\.netset:6: .*)$", 10)
        print("bad reload: " + m.group(1))
        for src, want in (("127.0.0.3", "echo"), ("127.0.0.4", "refused")):
            got = echo_or_refused(port, src)
            if got != want:
                failures.append("after a refused reload: from %s: %s, expected %s"
                                % (src, got, want))
        open(netset, "w").close()  # truncated in place, not yet rewritten
        srv.proc.send_signal(signal.SIGHUP)
        m = wait_line(srv, r"reload refused, rules in force kept: (\S+fh\.netset:1: empty file.*)$",
                      10)
        print("empty reload: " + m.group(1))
        got = echo_or_refused(port, "127.0.0.4")
        if got != "refused":
            failures.append("after an empty file's reload: from 127.0.0.4: %s, expected refused"
                            % got)
        if not srv.alive():
            failures.append("pc-echo died:\n" + srv.tail())
    finally:
        srv.kill()
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir", help="directory holding pc-echo (<build>/bin)")
    ap.add_argument("--lines", type=int, default=200000, help="entries in the big list")
    ap.add_argument("--backend", help="pc-echo --backend (default: its own choice)")
    ap.add_argument("--budget", type=int, default=60, help="overall time limit, s")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pc-block-lists-") as tmp:
        return run_checks(lambda: run(args, tmp), args.budget)

if __name__ == "__main__":
    sys.exit(main())
