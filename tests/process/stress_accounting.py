#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-stress counts what the server did, no more, no less.

    stress_accounting.py BIN_DIR

Runs a small HTTP server in this process (threads, loopback, an ephemeral
port) in one of several modes, and BIN_DIR/pc-stress --json (-c 2 -t 1,
about 0.5 s) against it:

  http10     "HTTP/1.0 200" + Content-Length, then the server closes (HTTP/1.0
             is not persistent unless it says keep-alive; python3 -m
             http.server): requests answered, no error, one connection per
             response (pc-stress sends nothing more on a closing connection);
  http10     with --pipeline 4: no error, and the 3 requests pipelined behind
             each closing response are counted as dropped (3 per connection);
  http10ka   "HTTP/1.0 200" + Connection: keep-alive, the connection kept:
             no error, the 2 connections reused;
  http11     "HTTP/1.1 200" + Content-Length, --pipeline 4: no error, 2
             connections, nothing dropped;
  http11     with --close (the server answers keep-alive, ignoring the
             request's Connection: close): pc-stress closes after each
             response, one connection per response, no error (it waited for
             the server's close until --timeout: 2 requests in 0.5 s);
  close11    "HTTP/1.1 200" + Connection: close + Content-Length, then close:
             no error, one connection per response;
  toclose    "HTTP/1.1 200" with no length: the body runs to the close, which
             completes it: no error, one connection per response;
  notfound   "HTTP/1.1 404" + Content-Length: every response answered and
             counted as a bad_status error, one each; "HTTP/1.1 302"
             (moved): answered, no error;
  silent     reads requests, never answers (--timeout longer than the run):
             exit 0 (as with errors), but the report is not clean: the 2
             requests in flight at the end are "unanswered", the text report
             and stderr say no request was answered; with --pipeline 3, all 6
             are (each request, not each connection);
  backlog    a listener with a backlog of 0 that never accepts: the kernel
             drops the SYNs past the first (-c 3, 0.5 s, before the SYN is
             sent again): those connects are "unconnected", not errors;
  rate       --rate 20 -c 1 against http11: about 20 requests a second, the
             first at once, and a latency measured from each request's
             scheduled time that is the server's time, not the 50 ms
             interval (request k was sent at (k+1)/rate, timed from k/rate),
             and not 0 either (timed from its send, not from a later time);
  ratefmt    --rate 0.5 and 0.01: the text report says "rate 0.5/s" and the
             JSON report "rate": 0.01 (they said "rate 0/s" and 0.0, which is
             the JSON report's closed loop);
  url        a URL path holding '"' and '\\': the JSON report parses and
             names the URL as given;
  nofile     -c 200 with an open-file limit of 100: refused at start (exit 1,
             stderr names the limit), not 100 connects failing; with a hard
             limit of 1000 the soft limit is raised and all 200 connect,
             also with -t 64 (the 64 workers' own descriptors were not
             counted: the limit went to 264, and about 70 connects failed
             with EMFILE, as connect_other);
  numbers    -c 1.5, -t 1.9, --timeout 0.9, --timeout ' -5' (a blank, then a
             sign: was an out-of-range double to unsigned conversion),
             --timeout +5, -c 0, --pipeline 0x10, -d ' 1', -d nan: exit 2 with
             the flag named on stderr; --timeout 0 (never) is accepted, and
             so are --rate 1e9, --timeout 86400000 and --pipeline 1024.

A closing server shuts its side down after the response and reads until the
client closes (RFC 9112 section 9.6's staged close), so that pipelined
requests it never read cannot turn its close into a reset.
Exit 0 on pass, 1 on failure (every failed check printed). Bounded: each
pc-stress run has a time limit, an overall alarm (60 s) ends the run, and the
server threads are stopped and the listening socket closed on every exit
path. Python 3 standard library only.
"""

import argparse
import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proclib import Checks, run_checks, run_stress, stress_json  # noqa: E402

HOST = "127.0.0.1"
ANSWER = {
    "http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "http10ka": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    "http11": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "close11": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "toclose": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody to the close",
    "notfound": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
    "moved": b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
    "silent": None,
}
CLOSES = ("http10", "close11", "toclose")


class TestServer:
    """HTTP/1.x server on 127.0.0.1 in one mode: one thread per connection.
    stop() ends every thread within about 0.2 s and closes the sockets."""

    def __init__(self, mode):
        self.mode = mode
        self.stop_evt = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(512)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop_evt.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        c.settimeout(0.2)
        buf = b""
        answer = ANSWER[self.mode]
        try:
            while not self.stop_evt.is_set():
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                buf += d
                while b"\r\n\r\n" in buf:
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    if answer is None:
                        continue
                    c.sendall(answer)
                    if self.mode in CLOSES:
                        # staged close: FIN, then read until the client closes
                        c.shutdown(socket.SHUT_WR)
                        self._drain(c)
                        return
        except OSError:
            pass
        finally:
            c.close()

    def _drain(self, c):
        for _ in range(25):  # at most about 5 s
            if self.stop_evt.is_set():
                return
            try:
                if not c.recv(65536):
                    return
            except socket.timeout:
                continue

    def stop(self):
        self.stop_evt.set()
        self.thread.join(5)
        self.ls.close()


def nonzero(errors):
    return {k: v for k, v in errors.items() if v}


def report(out):
    """pc-stress --json's report from its stdout; {} when it is not JSON."""
    try:
        return json.loads(out)
    except ValueError:
        return {}


def stress(a, mode, extra, seconds="0.5"):
    """pc-stress --json against a TestServer in mode: the report (a dict)."""
    srv = TestServer(mode)
    try:
        j = stress_json(a.bin_dir, ["http://%s:%d/" % (HOST, srv.port), "-c", "2", "-t", "1",
                                    "-d", seconds, "--timeout", "5000"] + extra)
    finally:
        srv.stop()
    errs = nonzero(j["errors"])
    print("%-9s %-14s requests %d connects %d unanswered %s dropped %s errors %d %s"
          % (mode, " ".join(extra), j["requests"], j["connects"], j.get("unanswered"),
             j.get("dropped"), j["errors_total"], errs))
    return j


def run(a):
    check = Checks()

    # correct responses are correct, whatever the connection does after them
    for mode in ("http10", "close11", "toclose"):
        j = stress(a, mode, [])
        check(j["requests"] > 0, "%s: requests answered" % mode)
        check(j["errors_total"] == 0, "%s: no error for correct responses (%s)"
              % (mode, nonzero(j["errors"])))
        # one connection per response: none reused after a closing one (the
        # run's end may cut a connection before its response: -c more)
        check(j["requests"] <= j["connects"] <= j["requests"] + 2,
              "%s: one connection per response (%d connects, %d requests)"
              % (mode, j["connects"], j["requests"]))
        check(j.get("dropped") == 0, "%s: nothing dropped without pipelining" % mode)

    # --close against a server that keeps the connection: pc-stress ends it
    j = stress(a, "http11", ["--close"])
    check(j["requests"] >= 20 and j["errors_total"] == 0,
          "http11 --close: the client closes after each response: requests answered (%d), "
          "no error (%s)" % (j["requests"], nonzero(j["errors"])))
    check(j["requests"] <= j["connects"] <= j["requests"] + 2,
          "http11 --close: one connection per response (%d connects, %d requests)"
          % (j["connects"], j["requests"]))

    # pipelined behind a closing response: dropped, counted one by one
    j = stress(a, "http10", ["--pipeline", "4"])
    check(j["requests"] > 0 and j["errors_total"] == 0,
          "http10 --pipeline 4: requests answered, no error (%s)" % nonzero(j["errors"]))
    dropped = j.get("dropped", -1)
    # each closed connection drops the 3 requests behind its response; at
    # the run's end up to 2 connections are cut with theirs (unanswered)
    check(3 * (j["requests"] - 2) <= dropped <= 3 * j["requests"],
          "http10 --pipeline 4: 3 requests dropped per response (%d for %d)"
          % (dropped, j["requests"]))

    # persistent connections stay persistent
    for mode, extra in (("http10ka", []), ("http11", ["--pipeline", "4"])):
        j = stress(a, mode, extra)
        what = " ".join([mode] + extra)
        check(j["requests"] > 0 and j["errors_total"] == 0,
              "%s: requests answered, no error (%s)" % (what, nonzero(j["errors"])))
        check(j["connects"] == 2, "%s: the 2 connections reused (%d connects)"
              % (what, j["connects"]))
        check(j.get("dropped") == 0, "%s: nothing dropped" % what)
        # the run ends with every connection's requests in flight
        inflight = 2 * (4 if extra else 1)
        check(j.get("unanswered", -1) <= inflight,
              "%s: at most %d unanswered at the end (%s)" % (what, inflight, j.get("unanswered")))

    # a 4xx answer is a response and an error
    j = stress(a, "notfound", [])
    check(j["requests"] > 0 and j["errors"]["bad_status"] == j["requests"] and
          j["errors_total"] == j["requests"],
          "notfound: every 404 answered and counted as bad_status (%d requests, %s)"
          % (j["requests"], nonzero(j["errors"])))
    j = stress(a, "moved", [])
    check(j["requests"] > 0 and j["errors_total"] == 0,
          "moved: a 302 is an answer, not an error (%d requests, %s)"
          % (j["requests"], nonzero(j["errors"])))

    # a server that never answers: not a clean report
    srv = TestServer("silent")
    try:
        url = "http://%s:%d/" % (HOST, srv.port)
        args = [url, "-c", "2", "-t", "1", "-d", "0.5", "--timeout", "10000"]
        rc, out, err = run_stress(a.bin_dir, args + ["--json"])
        print("silent: exit %d, %s; stderr %r" % (rc, out.strip(), err.strip()[-200:]))
        check(rc == 0, "silent: exit 0, as with errors (%d)" % rc)
        j = report(out)
        check(j.get("requests") == 0 and j.get("errors_total") == 0,
              "silent: no response and no error counted")
        check(j.get("unanswered") == 2,
              "silent: the 2 requests in flight reported as unanswered (%s)" % j.get("unanswered"))
        check("no request was answered" in err, "silent: stderr says no request was answered")
        rc, out, err = run_stress(a.bin_dir, args)
        check(rc == 0 and "unanswered 2" in out and "no request was answered" in out,
              "silent: the text report says unanswered 2 and no request was answered:\n" + out)
        j = stress_json(a.bin_dir, args + ["--pipeline", "3"])
        check(j["unanswered"] == 6 and j["errors_total"] == 0,
              "silent --pipeline 3: the 6 requests in flight unanswered (%s)" % j["unanswered"])
        # --timeout 0 is "never": accepted, and the run still ends on time
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "1", "-d", "0.3", "--timeout", "0",
                                              "--json"], timeout=10)
        check(rc == 0 and '"unanswered":1' in out,
              "silent: --timeout 0 runs, 1 unanswered (exit %d, %s)" % (rc, out.strip()[-120:]))
    finally:
        srv.stop()

    # connects the server never answered (SYNs dropped: a full accept
    # queue), in flight at the end: unconnected, not errors
    ls = socket.socket()
    try:
        ls.bind((HOST, 0))
        ls.listen(0)
        j = stress_json(a.bin_dir, ["http://%s:%d/" % (HOST, ls.getsockname()[1]), "-c", "3",
                                    "-t", "1", "-d", "0.5", "--timeout", "10000"])
    finally:
        ls.close()
    print("backlog: connects %d unconnected %d errors %d"
          % (j["connects"], j["unconnected"], j["errors_total"]))
    check(j["unconnected"] >= 1 and j["connects"] + j["unconnected"] == 3 and
          j["errors_total"] == 0,
          "backlog: connects without an answer are unconnected, not errors (%d connects, "
          "%d unconnected, %s)" % (j["connects"], j["unconnected"], nonzero(j["errors"])))

    # --rate: request k goes out at k / rate and is timed from there
    j = stress(a, "http11", ["-c", "1", "--rate", "20"], seconds="1.0")
    check(15 <= j["requests"] <= 23, "rate 20/s for 1 s: 21 scheduled, %d answered"
          % j["requests"])
    p50 = j["latency_us"]["p50"]
    check(0 < p50 < 25000, "rate 20/s: latency p50 %.0f us is the server's, not the 50 ms interval"
          " nor 0" % p50)

    # a fractional --rate is reported as given
    srv = TestServer("http11")
    try:
        url = "http://%s:%d/" % (HOST, srv.port)
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "1", "-d", "0.2", "--rate", "0.5"])
        check(rc == 0 and "rate 0.5/s" in out.split("\n")[0],
              "ratefmt: --rate 0.5 reported as 'rate 0.5/s' (%r)" % out.split("\n")[0])
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "1", "-d", "0.2", "--rate", "0.01",
                                              "--json"])
        j = report(out)
        check(rc == 0 and j.get("rate") == 0.01,
              "ratefmt: --rate 0.01 in the JSON report as 0.01 (%s)" % j.get("rate"))
    finally:
        srv.stop()

    # the URL in the JSON report is a JSON string whatever it holds
    srv = TestServer("http11")
    try:
        url = 'http://%s:%d/a"b\\c' % (HOST, srv.port)
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "1", "-d", "0.2", "--json"])
        j = report(out)
        check(rc == 0 and j.get("url") == url and j.get("requests", 0) > 0,
              "url: the JSON report parses and names %r (exit %d, %r)" % (url, rc, out[:120]))
    finally:
        srv.stop()

    # -c beyond the open-file limit: raised to the hard limit, else refused
    srv = TestServer("http11")
    try:
        url = "http://%s:%d/" % (HOST, srv.port)
        args = [url, "-c", "200", "-t", "1", "-d", "0.3", "--json"]
        rc, out, err = run_stress(a.bin_dir, args, nofile=(100, 100))
        check(rc == 1 and "open files" in err and "100" in err,
              "nofile: -c 200 under a limit of 100 refused at start (exit %d, %r)"
              % (rc, err.strip()[-200:]))
        rc, out, err = run_stress(a.bin_dir, args, nofile=(100, 1000))
        j = report(out)
        check(rc == 0 and j.get("connects") == 200 and j.get("errors_total") == 0,
              "nofile: soft 100, hard 1000: raised, 200 connects, no error (exit %d, %s, %s)"
              % (rc, j.get("connects"), nonzero(j.get("errors", {}))))
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "200", "-t", "64", "-d", "0.5",
                                              "--json"], nofile=(100, 1000))
        j = report(out)
        check(rc == 0 and j.get("connects") == 200 and j.get("errors_total") == 0,
              "nofile: -t 64, soft 100, hard 1000: 200 connects, no error (exit %d, %s, %s)"
              % (rc, j.get("connects"), nonzero(j.get("errors", {}))))
    finally:
        srv.stop()

    # numbers: whole, in range, digits first; exit 2 naming the flag
    url = "http://%s:9/" % HOST
    for flag, value in (("-c", "1.5"), ("-t", "1.9"), ("--timeout", "0.9"), ("--timeout", " -5"),
                        ("--timeout", "+5"), ("-c", "0"), ("--pipeline", "0x10"), ("-d", " 1"),
                        ("-d", "nan"), ("--rate", "-1")):
        rc, out, err = run_stress(a.bin_dir, [url, "-d", "0.1", flag, value], timeout=10)
        check(rc == 2 and ("pc-stress: %s needs" % flag) in err,
              "numbers: %s %r refused with exit 2 (exit %d, %r)"
              % (flag, value, rc, err.strip().split("\n")[0]))
    # the upper bounds themselves are accepted (nothing listens on port 9:
    # the run only fails its connects)
    for flag, value in (("--rate", "1e9"), ("--timeout", "86400000"), ("--pipeline", "1024")):
        rc, out, err = run_stress(a.bin_dir, [url, "-c", "1", "-d", "0.1", flag, value],
                                  timeout=10)
        check(rc == 0, "numbers: %s %s, the largest allowed, accepted (exit %d, %r)"
              % (flag, value, rc, err.strip().split("\n")[0]))
    return check.failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    a = ap.parse_args()
    return run_checks(lambda: run(a), 60)


if __name__ == "__main__":
    sys.exit(main())
