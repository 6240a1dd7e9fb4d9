#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: the listener's kernel filter as pc-echo runs it.

    kernel_filter.py BIN_DIR [--backend NAME] [--budget S]

With the issue's rules file (deny 127.0.0.2, deny 127.0.9.0/24, allow
127.0.0.0/8), checks that:
  1. as root, with --kernel-filter ebpf and then cbpf: the start-up line names
     that tier; 127.0.0.2 and
     127.0.9.7 get no SYN-ACK (connect times out, no reset), 127.0.0.1 is
     served; SIGHUP adding "deny 127.0.0.6" makes 127.0.0.6 time out; a bad
     file on SIGHUP is refused and everything stays; on [::1] with "deny
     ::1/128", each tier drops the SYN, also with a hop-by-hop or a
     destination options header in front of TCP;
  2. as nobody with only CAP_NET_ADMIN (setpriv, ambient): the cbpf tier, same
     behaviour;
  3. as plain nobody: the kernel's refusal is logged as the reason, the tier
     is off, and a denied client is closed after the handshake (no echo);
  4. in two network namespaces joined by a veth pair (server 10.203.0.1,
     clients 10.203.0.2 allowed and 10.203.0.3 denied, inside namespaces this
     test creates and deletes): the denied SYNs cross a real link and the
     server namespace's TcpPassiveOpens does not move for them.

Needs root (it exits 77, "skipped", with a message otherwise), setpriv and
ip (iproute2). Bounded: an overall alarm ends the run; servers are killed and
namespaces deleted on every exit path. Python 3 standard library only; Linux.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from proclib import SKIP, Fail, Server, now, run_checks  # noqa: E402

RULES = "deny 127.0.0.2/32\ndeny 127.0.9.0/24\nallow 127.0.0.0/8\n"
DENIED_WAIT = 0.8  # s without an answer to the SYN (loopback answers in microseconds)

# connect from src to dst:port within t seconds; prints ok / timeout / refused / closed / error.
# An optional fifth argument, IPv6 only, puts an extension header in front of TCP: "hopopts"
# (hop-by-hop options) or "dstopts" (destination options), each 8 bytes of padding.
CLIENT = r"""
import socket, sys
src, dst, port, t = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
s.settimeout(t)
s.bind((src, 0))
if len(sys.argv) > 5:  # IPV6_HOPOPTS 54, IPV6_DSTOPTS 59; PadN of 4 bytes fills the 8
    s.setsockopt(socket.IPPROTO_IPV6, {"hopopts": 54, "dstopts": 59}[sys.argv[5]],
                 bytes([0, 0, 1, 4, 0, 0, 0, 0]))
try:
    s.connect((dst, port))
except socket.timeout:
    print("timeout"); sys.exit(0)
except ConnectionRefusedError:
    print("refused"); sys.exit(0)
except ConnectionResetError:  # handshake done, then reset before connect returned
    print("closed"); sys.exit(0)
except OSError as e:
    print("error %s" % e); sys.exit(0)
try:
    s.settimeout(5)
    s.sendall(b"ping")
    d = s.recv(16)
    print("ok" if d == b"ping" else "closed")
except OSError:
    print("closed")
"""


def connect_all(probes):
    """Runs the connects [(src, dst, port, t, netns, ext)] at once (a denied one
    waits its whole t); their results, in order."""
    procs = []
    for src, dst, port, t, netns, ext in probes:
        argv = [sys.executable, "-c", CLIENT, src, dst, str(port), str(t)] + ([ext] if ext else [])
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        procs.append((subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), t))
    outs = []
    for p, t in procs:
        try:
            out, err = p.communicate(timeout=t + 15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        outs.append(out.strip() or ("error: " + err.strip()))
    return outs


def connect(src, dst, port, t, netns=None, ext=None):
    return connect_all([(src, dst, port, t, netns, ext)])[0]


def expect(failures, what, got, want):
    if got != want:
        failures.append("%s: got %s, expected %s" % (what, got, want))


def kernel_line(srv, timeout=5.0):
    t_end = now() + timeout
    while now() < t_end:
        for line in list(srv.lines):
            if "kernel filter:" in line and line.startswith("[out]"):
                return line[len("[out] "):]
        if not srv.alive():
            break
        time.sleep(0.05)
    raise Fail("no 'kernel filter:' line at start:\n" + srv.tail())


def wait_line(srv, text, timeout=5.0):
    t_end = now() + timeout
    while now() < t_end:
        if any(text in line for line in list(srv.lines)):
            return True
        time.sleep(0.05)
    return False


def echo_argv(args, rules, listen="127.0.0.1:0", prefix=(), tier=None):
    argv = list(prefix) + [os.path.join(args.bin_dir, "pc-echo"), "--listen", listen,
                            "--rules", rules, "--threads", "2"]
    if tier:
        argv += ["--kernel-filter", tier]
    if args.backend:
        argv += ["--backend", args.backend]
    return argv


def tier_started(srv, failures, case, tier):
    """The server's port once its start-up line names tier ("auto": any
    kernel tier); None when the eBPF tier asked for is not built (skipped)."""
    port = srv.wait_listening(10)
    line = kernel_line(srv)
    if tier == "ebpf" and "not built" in line:
        print("no eBPF tier built: the %s ebpf case is skipped (%s)" % (case, line))
        return None
    want = ("cbpf", "ebpf") if tier == "auto" else (tier,)
    if not any(line.startswith("kernel filter: " + w) for w in want):
        failures.append("%s (%s): start-up line names another tier: %s" % (case, tier, line))
    return port


def case_root(args, tmp, failures, tier):
    """tier: "auto" (any kernel tier), "ebpf" or "cbpf" (that one)."""
    rules = os.path.join(tmp, "root.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    srv = Server(echo_argv(args, rules, tier=tier))
    try:
        port = tier_started(srv, failures, "root", tier)
        if port is None:
            return
        expect(failures, "root 127.0.0.1", connect("127.0.0.1", "127.0.0.1", port, 5), "ok")
        srcs = ("127.0.0.2", "127.0.9.7")
        got = connect_all([(src, "127.0.0.1", port, DENIED_WAIT, None, None) for src in srcs])
        for src, out in zip(srcs, got):
            expect(failures, "root " + src, out, "timeout")
        expect(failures, "root 127.0.0.6 before reload",
               connect("127.0.0.6", "127.0.0.1", port, 5), "ok")
        with open(rules, "w") as f:
            f.write(RULES + "deny 127.0.0.6\n")
        srv.proc.send_signal(signal.SIGHUP)
        if not wait_line(srv, "reloaded 4 rules"):
            failures.append("root: no reload line:\n" + srv.tail())
        expect(failures, "root 127.0.0.6 after reload",
               connect("127.0.0.6", "127.0.0.1", port, DENIED_WAIT), "timeout")
        with open(rules, "w") as f:
            f.write("deny 127.0.0.7\nallow 127.0.0.0/40\n")
        srv.proc.send_signal(signal.SIGHUP)
        if not wait_line(srv, "reload refused"):
            failures.append("root: bad file not refused:\n" + srv.tail())
        expect(failures, "root 127.0.0.6 after a bad reload",
               connect("127.0.0.6", "127.0.0.1", port, DENIED_WAIT), "timeout")
        expect(failures, "root 127.0.0.7 after a bad reload",
               connect("127.0.0.7", "127.0.0.1", port, 5), "ok")
        expect(failures, "root 127.0.0.1 at the end", connect("127.0.0.1", "127.0.0.1", port, 5),
               "ok")
    finally:
        srv.kill()


def have_ipv6():
    try:
        import socket
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def case_v6(args, tmp, failures):
    """A denied IPv6 SYN is dropped by each tier, also behind an extension
    header (the eBPF tier used to pass those on to a reset after the handshake)."""
    rules = os.path.join(tmp, "v6.rules")
    with open(rules, "w") as f:
        f.write("deny ::1/128\n")
    for tier in ("ebpf", "cbpf"):
        srv = Server(echo_argv(args, rules, listen="[::1]:0", tier=tier))
        try:
            port = tier_started(srv, failures, "v6", tier)
            if port is None:
                continue
            exts = (None, "hopopts", "dstopts")
            got = connect_all([("::1", "::1", port, DENIED_WAIT, None, ext) for ext in exts])
            for ext, out in zip(exts, got):
                expect(failures, "v6 %s [::1] %s" % (tier, ext or "plain"), out, "timeout")
        finally:
            srv.kill()


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def case_nobody(args, tmp, failures, with_cap):
    rules = os.path.join(tmp, "nobody.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    os.chmod(rules, 0o644)
    prefix = NOBODY + (["--inh-caps=+net_admin", "--ambient-caps=+net_admin"] if with_cap else [])
    who = "nobody+CAP_NET_ADMIN" if with_cap else "nobody"
    srv = Server(echo_argv(args, rules, prefix=prefix))
    try:
        port = srv.wait_listening(10)
        line = kernel_line(srv)
        if with_cap:
            if not line.startswith("kernel filter: cbpf"):
                failures.append("%s: expected the cbpf tier: %s" % (who, line))
            expect(failures, who + " 127.0.0.2", connect("127.0.0.2", "127.0.0.1", port,
                                                         DENIED_WAIT), "timeout")
        else:
            if not line.startswith("kernel filter: off: ") or "not permitted" not in line:
                failures.append("%s: expected off with the kernel's refusal: %s" % (who, line))
            if not wait_line(srv, "operation not permitted"):
                failures.append("%s: the refusal was not logged:\n%s" % (who, srv.tail()))
            expect(failures, who + " 127.0.0.2", connect("127.0.0.2", "127.0.0.1", port, 5),
                   "closed")
        expect(failures, who + " 127.0.0.1", connect("127.0.0.1", "127.0.0.1", port, 5), "ok")
    finally:
        srv.kill()


def passive_opens(ns):
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    tcp = [line.split() for line in out if line.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("PassiveOpens")])


def case_netns(args, tmp, failures):
    tag = "%d" % os.getpid()
    ns_s, ns_c = "pckf-s-" + tag, "pckf-c-" + tag
    veth_s, veth_c = "pckfs" + tag, "pckfc" + tag

    def ip(*a, ns=None):
        argv = (["ip", "netns", "exec", ns] if ns else []) + ["ip"] + list(a)
        subprocess.run(argv, check=True, capture_output=True, timeout=10)

    srv = None
    try:
        ip("netns", "add", ns_s)
        ip("netns", "add", ns_c)
        ip("link", "add", veth_s, "type", "veth", "peer", "name", veth_c)
        ip("link", "set", veth_s, "netns", ns_s)
        ip("link", "set", veth_c, "netns", ns_c)
        ip("addr", "add", "10.203.0.1/29", "dev", veth_s, ns=ns_s)
        ip("addr", "add", "10.203.0.2/29", "dev", veth_c, ns=ns_c)
        ip("addr", "add", "10.203.0.3/29", "dev", veth_c, ns=ns_c)
        for ns, dev in ((ns_s, veth_s), (ns_c, veth_c)):
            ip("link", "set", "lo", "up", ns=ns)
            ip("link", "set", dev, "up", ns=ns)
        rules = os.path.join(tmp, "netns.rules")
        with open(rules, "w") as f:
            f.write("deny 10.203.0.3\n")
        srv = Server(["ip", "netns", "exec", ns_s] + echo_argv(args, rules, "10.203.0.1:0"))
        port = srv.wait_listening(10)
        line = kernel_line(srv)
        if line.startswith("kernel filter: off"):
            failures.append("netns: no kernel tier: " + line)
        # the link may need a moment (DAD does not apply to IPv4; ARP does)
        first = connect("10.203.0.2", "10.203.0.1", port, 5, ns_c)
        expect(failures, "netns allowed 10.203.0.2", first, "ok")
        before = passive_opens(ns_s)
        for out in connect_all([("10.203.0.3", "10.203.0.1", port, DENIED_WAIT, ns_c, None)] * 3):
            expect(failures, "netns denied 10.203.0.3", out, "timeout")
        after = passive_opens(ns_s)
        if after != before:
            failures.append("netns: TcpPassiveOpens moved %d -> %d for denied SYNs"
                            % (before, after))
        expect(failures, "netns allowed again", connect("10.203.0.2", "10.203.0.1", port, 5, ns_c),
               "ok")
        if passive_opens(ns_s) != after + 1:
            failures.append("netns: TcpPassiveOpens did not count the allowed connection")
    finally:
        if srv:
            srv.kill()
        for ns in (ns_s, ns_c):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run(args):
    failures = []
    tmp = tempfile.mkdtemp(prefix="pc-kfilter-")
    os.chmod(tmp, 0o755)  # nobody reads the rules file
    try:
        case_root(args, tmp, failures, "ebpf")
        case_root(args, tmp, failures, "cbpf")
        if have_ipv6():
            case_v6(args, tmp, failures)
        else:
            print("no IPv6 loopback: the [::1] case is skipped")
        if shutil.which("setpriv"):
            case_nobody(args, tmp, failures, with_cap=True)
            case_nobody(args, tmp, failures, with_cap=False)
        else:
            print("setpriv missing: the nobody cases are skipped")
        if shutil.which("ip"):
            case_netns(args, tmp, failures)
        else:
            print("ip (iproute2) missing: the network-namespace case is skipped "
                  "(scripts/test.sh installs iproute2)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir", help="directory holding pc-echo (<build>/bin)")
    ap.add_argument("--backend", help="pc-echo --backend (default: its own choice)")
    ap.add_argument("--budget", type=int, default=80, help="overall time limit, s")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: kernel_filter.py needs root (CAP_NET_ADMIN, setpriv, namespaces)")
        return SKIP
    return run_checks(lambda: run(args), args.budget)

if __name__ == "__main__":
    sys.exit(main())
