#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: a real HAProxy in front of pc-http, PROXY v2 and v1.

    haproxy_proxy.py BIN_DIR [--backend NAME] [--haproxy PATH] [--budget S]

Starts BIN_DIR/pc-http with --proxy-protocol (trusted: 127.0.0.1, where
HAProxy connects from), --rules (deny 127.0.0.2) and --per-source-max 2, and
one HAProxy (mode tcp) with two frontends on free loopback ports: one whose
server line says send-proxy-v2, one send-proxy (v1). Through each frontend:

  - a client bound to 127.0.0.7 asks GET /whoami and is told it is
    127.0.0.7 with its own source port, behind proxy 127.0.0.1;
  - a client bound to 127.0.0.2 is rejected by the rule on the real client
    (the connection ends without a response);
  - 127.0.0.8 holds two keep-alive connections; a third one is rejected
    (--per-source-max 2 keyed by the real client) while 127.0.0.9 is served;
    once the two close, 127.0.0.8 is served again (its slots came back).

HAProxy health-checks the server (check inter 500: its checks carry a
header too). Then /metrics (asked directly from 127.0.0.3, an untrusted
source that needs no header) must count 4 PROXY rejections (2 rules, 2
source_max, plus one source_max for each early retry of 127.0.0.8 made before
HAProxy passed the two closes on), at least 10 headers parsed and no
malformed header.

Exit 0 on pass, 1 on failure (every failed check printed), 77 when HAProxy is
not installed (scripts/test.sh installs it). HAProxy and pc-http are stopped
on every exit path; an overall alarm bounds the run. Linux, Python 3
standard library only.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from proclib import Fail, Server, now, pdeathsig, read_response, set_budget  # noqa: E402
from proclib import connect_from as connect, metric_value  # noqa: E402

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(s, path):
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
    return read_response(s)


def wait_port(port, limit, what, proc=None):
    end = now() + limit
    while now() < end:
        if proc is not None and proc.poll() is not None:
            raise Fail("%s exited with %s before listening" % (what, proc.returncode))
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Fail("%s not listening on %d within %.0f s" % (what, port, limit))


def run(args, failures):
    tmp = tempfile.mkdtemp(prefix="pc-haproxy-")
    trusted = os.path.join(tmp, "trusted")
    rules = os.path.join(tmp, "rules")
    with open(trusted, "w") as f:
        f.write("# HAProxy connects from here\nallow 127.0.0.1\n")
    with open(rules, "w") as f:
        f.write("deny 127.0.0.2\n")
    argv = [os.path.join(args.bin_dir, "pc-http"), "--listen", "%s:0" % HOST, "--threads", "2",
            "--proxy-protocol", trusted, "--rules", rules, "--per-source-max", "2"]
    if args.backend:
        argv += ["--backend", args.backend]
    srv = Server(argv)
    hap = None
    try:
        pc_port = srv.wait_listening(15.0)
        fe = {"v2": free_port(), "v1": free_port()}
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 200\n"
                    # retries 0: HAProxy takes a reset right after the header
                    # for a failed connect and would retry it (counted again)
                    "defaults\n    mode tcp\n    retries 0\n    timeout connect 5s\n"
                    "    timeout client 30s\n    timeout server 30s\n")
            for v, opt in (("v2", "send-proxy-v2"), ("v1", "send-proxy")):
                f.write("frontend fe_%s\n    bind %s:%d\n    default_backend be_%s\n"
                        "backend be_%s\n    server pc %s:%d %s check inter 500\n"
                        % (v, HOST, fe[v], v, v, HOST, pc_port, opt))
        hap = subprocess.Popen([args.haproxy, "-db", "-f", cfg], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=pdeathsig)
        for v in fe:
            wait_port(fe[v], 10.0, "haproxy frontend " + v, hap)
        print("pc-http on %d, haproxy v2 on %d, v1 on %d" % (pc_port, fe["v2"], fe["v1"]))

        early_retries = 0
        for v, port in fe.items():
            # the real client's address and port
            s = connect(port, "127.0.0.7")
            sport = s.getsockname()[1]
            r = get(s, "/whoami")
            s.close()
            want = "client 127.0.0.7:%d\nproxy 127.0.0.1:" % sport
            if not r or r[0] != 200 or not r[1].startswith(want):
                failures.append("%s: /whoami from 127.0.0.7 answered %r, wanted %r..."
                                % (v, r, want))
            else:
                print("%s: %s" % (v, r[1].replace("\n", " | ")))
            # a rule on the real client
            s = connect(port, "127.0.0.2")
            r = get(s, "/whoami")
            s.close()
            if r is not None:
                failures.append("%s: 127.0.0.2 (denied) was answered: %r" % (v, r))
            # per-source maximum, keyed by the real client
            held = []
            for _ in range(2):
                s = connect(port, "127.0.0.8")
                r = get(s, "/whoami")
                if not r or r[0] != 200:
                    failures.append("%s: 127.0.0.8 connection %d not served: %r"
                                    % (v, len(held) + 1, r))
                held.append(s)
            s = connect(port, "127.0.0.8")
            r = get(s, "/whoami")
            s.close()
            if r is not None:
                failures.append("%s: third connection of 127.0.0.8 served (max 2): %r" % (v, r))
            s = connect(port, "127.0.0.9")
            r = get(s, "/whoami")
            s.close()
            if not r or not r[1].startswith("client 127.0.0.9:"):
                failures.append("%s: 127.0.0.9 not served while 127.0.0.8 is at its max: %r"
                                % (v, r))
            for s in held:
                s.close()
            served = False
            end = now() + 5.0
            while now() < end and not served:  # the server sees the closes shortly
                s = connect(port, "127.0.0.8")
                r = get(s, "/whoami")
                s.close()
                served = bool(r and r[0] == 200)
                if not served:
                    # rejected by source_max: HAProxy had not yet passed the
                    # two closes on; counted in the totals below
                    early_retries += 1
                    time.sleep(0.1)
            if not served:
                failures.append("%s: 127.0.0.8 not served again after closing its two" % v)

        s = connect(pc_port, "127.0.0.3")  # untrusted: plain HTTP, no header
        r = get(s, "/metrics")
        s.close()
        if not r or r[0] != 200:
            raise Fail("/metrics not answered directly: %r" % (r,))
        text = r[1]
        rej_rules = metric_value(text, 'pc_connections_rejected_total{step="rules"}')
        rej_max = metric_value(text, 'pc_connections_rejected_total{step="source_max"}')
        px_rej = metric_value(text, "pc_proxy_rejected_total")
        headers = metric_value(text, "pc_proxy_headers_total")
        bad = sum(int(x) for x in re.findall(r"^pc_proxy_errors_total\{[^}]*\} (\d+)$", text,
                                             re.M))
        print("metrics: headers %s, proxy rejected %s (rules %s, source_max %s), malformed %d"
              ", early retries %d" % (headers, px_rej, rej_rules, rej_max, bad, early_retries))
        want_max = 2 + early_retries
        if rej_rules != 2 or rej_max != want_max or px_rej != 2 + want_max:
            failures.append("rejections counted: rules %s, source_max %s, proxy %s; wanted 2, %d, %d"
                            % (rej_rules, rej_max, px_rej, want_max, 2 + want_max))
        if headers is None or headers < 10:
            failures.append("PROXY headers parsed: %s, wanted >= 10" % headers)
        if bad:
            failures.append("%d malformed headers counted, wanted 0" % bad)
        if not srv.alive():
            failures.append("pc-http died")
    finally:
        if hap is not None:
            if hap.poll() is None:
                hap.kill()
            try:
                out = hap.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:
                out = b""
            if failures and out:
                print("--- haproxy output ---\n" + out.decode("utf-8", "replace")[-2000:])
        srv.kill()
        if failures:
            print("--- pc-http output ---\n" + srv.tail())
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--backend")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--budget", type=int, default=60)
    args = ap.parse_args()
    if not os.access(args.haproxy, os.X_OK):
        print("SKIP: haproxy not found (%s); scripts/test.sh installs it" % args.haproxy)
        return 77
    set_budget(args.budget)
    failures = []
    try:
        run(args, failures)
    except Fail as e:
        failures.append(str(e))
    for f in failures:
        print("FAIL: " + f)
    print("PASS" if not failures else "FAILED (%d)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
