#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-http --accept-batch-us, as a user runs it.

    accept_batch.py BIN_DIR [--backend NAME]

  announce  pc-http --accept-batch-us 300 prints "accept batching: 300 us";
  load      pc-stress --close then keep-alive, 128 connections: every request
            answered, no error, one request per connection; /metrics counts
            accept-batch sleeps (> 0);
  lone      pc-http --accept-batch-us 50000: 10 connections one after the
            other, each with one request, then 4 at a time for 10 rounds
            (fewer than 32 open): the accept thread never slept for them
            (/metrics; the /metrics connections themselves are lone ones).

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: pc-stress
runs have time limits, an overall alarm (60 s) ends the run, the servers are
killed on every exit path. Python 3 standard library only.
"""

import os
import socket
import sys

from proclib import GET_ROOT, Checks, Server, backend_main, expect_200, metric, stress_json  # noqa: E402


def batch_waits(port):
    return metric(port, "pc_accept_batch_waits_total")


def run(a):
    check = Checks()

    http = os.path.join(a.bin_dir, "pc-http")
    srv = Server([http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend,
                  "--accept-batch-us", "300"])
    try:
        port = srv.wait_listening(10)
        check("accept batching: 300 us" in "\n".join(srv.lines), "announce: accept batching 300 us")
        url = "http://127.0.0.1:%d/" % port
        common = ["-t", "2", "-c", "128", "--timeout", "5000"]
        j = stress_json(a.bin_dir, [url, "--close", "-d", "1"] + common)
        print("churn: %d requests, %d connects, errors %s" % (j["requests"], j["connects"],
                                                             j["errors"]))
        check(j["requests"] > 0 and j["errors_total"] == 0, "load: churn, no error")
        check(0 <= j["connects"] - j["requests"] <= 128,
              "load: churn, one request per connection (those open when the run ended aside)")
        j = stress_json(a.bin_dir, [url, "-d", "1"] + common)
        print("keep-alive: %d requests, errors %s" % (j["requests"], j["errors"]))
        check(j["requests"] > 0 and j["errors_total"] == 0, "load: keep-alive, no error")
        n = batch_waits(port)
        check(n is not None and n > 0, "load: /metrics counts accept-batch sleeps (%s)" % n)
    finally:
        srv.kill()

    srv = Server([http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend,
                  "--accept-batch-us", "50000"])
    try:
        port = srv.wait_listening(10)
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.sendall(GET_ROOT)
            expect_200(s)
            s.close()
        n = batch_waits(port)
        check(n == 0, "lone: 10 connections one after the other, no sleep (%s)" % n)
        for _ in range(10):
            socks = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(4)]
            for s in socks:
                s.sendall(GET_ROOT)
            for s in socks:
                expect_200(s)
                s.close()
        n = batch_waits(port)
        check(n == 0, "lone: 10 rounds of 4 clients (fewer than 32 open), no sleep (%s)" % n)
    finally:
        srv.kill()
    return check.failures


if __name__ == "__main__":
    sys.exit(backend_main(run, 60))
