#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http --batch-wait-us, as a user runs it.

    batch_wait.py BIN_DIR [--backend NAME]

  announce  pc-http --batch-wait-us 300 prints "batch wait: workers W us,
            accept 300 us", W = 300 on io_uring with Linux >= 6.12
            (IORING_FEAT_MIN_TIMEOUT), else 0 and a warning on stderr naming
            why;
  load      pc-stress --close and keep-alive, 64 connections: every request
            answered, no error; /metrics counts batch waits (> 0);
  lone      pc-http --batch-wait-us 50000 (50 ms: a held exchange would show):
            30 requests one after the other on one connection, then 10
            connections one after the other, each well under 50 ms in total.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: pc-stress
runs have time limits, an overall alarm (60 s) ends the run, the servers are
killed on every exit path. Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time

from proclib import Fail, Server, set_budget  # noqa: E402

REQ = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def kernel_min_timeout():
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (6, 12)


def run_json(bin_dir, args):
    p = subprocess.run([os.path.join(bin_dir, "pc-stress")] + args + ["--json"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise Fail("pc-stress %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                  p.stderr.decode("utf-8", "replace")[-300:]))
    return json.loads(p.stdout.decode("utf-8", "replace"))


def read_response(s, buf):
    """One HTTP response off s (Content-Length framed); returns the rest."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise Fail("connection closed before a response")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"Content-Length: (\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        d = s.recv(4096)
        if not d:
            raise Fail("connection closed inside a body")
        rest += d
    if not head.startswith(b"HTTP/1.1 200"):
        raise Fail("unexpected response %r" % head[:40])
    return rest[n:]


def metrics(port):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out.decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args()
    set_budget(60)
    failures = []

    def check(cond, what):
        print("%s: %s" % ("ok" if cond else "FAIL", what))
        if not cond:
            failures.append(what)

    http = os.path.join(a.bin_dir, "pc-http")
    srv = Server([http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend,
                  "--batch-wait-us", "300"])
    try:
        port = srv.wait_listening(10)
        out = "\n".join(srv.lines)
        m = re.search(r"batch wait: workers (\d+) us, accept (\d+) us", out)
        uring = re.search(r"backend uring", out) is not None
        want = 300 if uring and kernel_min_timeout() else 0
        check(m is not None and int(m.group(1)) == want and int(m.group(2)) == 300,
              "announce: workers %d us, accept 300 us (%s)" % (want, m.group(0) if m else out))
        if want == 0:
            time.sleep(0.2)
            check("workers wake on every completion" in "\n".join(srv.lines),
                  "announce: the warning says the workers do not batch")
        url = "http://127.0.0.1:%d/" % port
        common = ["-t", "2", "-c", "64", "--timeout", "5000"]
        j = run_json(a.bin_dir, [url, "--close", "-d", "2"] + common)
        print("churn: %d requests, %d connects, errors %s" % (j["requests"], j["connects"],
                                                             j["errors"]))
        check(j["requests"] > 0 and j["errors_total"] == 0, "load: churn, no error")
        check(0 <= j["connects"] - j["requests"] <= 64,
              "load: churn, one request per connection (those open when the run ended aside)")
        j = run_json(a.bin_dir, [url, "-d", "1"] + common)
        print("keep-alive: %d requests, errors %s" % (j["requests"], j["errors"]))
        check(j["requests"] > 0 and j["errors_total"] == 0, "load: keep-alive, no error")
        m = re.search(r"^pc_batch_waits_total (\d+)$", metrics(port), re.M)
        check(m is not None and int(m.group(1)) > 0,
              "load: /metrics counts batch waits (%s)" % (m.group(1) if m else "missing"))
    finally:
        srv.kill()

    srv = Server([http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend,
                  "--batch-wait-us", "50000"])
    try:
        port = srv.wait_listening(10)
        s = socket.create_connection(("127.0.0.1", port), 5)
        t0 = time.monotonic()
        rest = b""
        for _ in range(30):
            s.sendall(REQ)
            rest = read_response(s, rest)
        ms = (time.monotonic() - t0) * 1000
        s.close()
        check(ms < 750, "lone: 30 requests in %.0f ms (held ones take 50 ms each)" % ms)
        t0 = time.monotonic()
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.sendall(REQ)
            read_response(s, b"")
            s.close()
        ms = (time.monotonic() - t0) * 1000
        check(ms < 250, "lone: 10 connections in %.0f ms (held ones take 50 ms each)" % ms)
    finally:
        srv.kill()

    if failures:
        print("FAILED: %d check(s)" % len(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print("FAIL: %s" % e)
        sys.exit(1)
