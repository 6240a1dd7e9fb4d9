# SPDX-License-Identifier: MIT
"""Shared pieces of the process-level tests: the server process (output
drained, port read from its "listening on" line, killed on every exit path),
the failure exception and a run's checks, a monotonic clock, errno names, pc-http's /metrics
page and one value of it, reading one HTTP response (or expecting a 200),
pc-stress's JSON report, and the main() of a BIN_DIR [--backend] script."""

import argparse
import collections
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time


class Fail(Exception):
    pass


class Checks:
    """The checks of a run: check(cond, what) prints "ok: what" or
    "FAIL: what" and keeps the failures (check.failures) for run_checks."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print("%s: %s" % ("ok" if cond else "FAIL", what))
        if not cond:
            self.failures.append(what)
        return cond


# one keep-alive request for pc-http's "/"
GET_ROOT = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def connect_from(port, src, host="127.0.0.1", timeout=5.0):
    """A TCP connection to host:port from the source address src."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect((host, port))
    return s


def read_to_eof(s):
    """Everything s receives until the peer's FIN, as bytes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def http_metrics(port, host="127.0.0.1"):
    """pc-http's /metrics page (one connection, Connection: close) as text."""
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    body = read_to_eof(s)
    s.close()
    return body.decode("utf-8", "replace")


def metric_value(text, name):
    """The integer value of the metric named name (with its labels, if any)
    in a /metrics page's text, or None if the page does not have it."""
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def metric(port, name):
    """The value of an unlabelled integer metric on pc-http's /metrics, or
    None if the page does not have it."""
    return metric_value(http_metrics(port), name)


def read_response(s):
    """One HTTP/1.1 response with Content-Length: (status, body), or None if
    the connection ended (FIN or reset) before a whole response."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                return None
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            d = s.recv(4096)
            if not d:
                return None
            rest += d
        status = int(head.split(b" ", 2)[1])
        return status, rest[:n].decode()
    except ConnectionResetError:
        return None


def expect_200(s):
    """Read one response off s: Fail unless it is a 200."""
    r = read_response(s)
    if r is None or r[0] != 200:
        raise Fail("unexpected response %r" % (r,))


def run_stress(bin_dir, args, timeout=30, nofile=None):
    """pc-stress ARGS: (exit status, stdout, stderr). nofile: (soft, hard)
    open-file limits to run it with."""
    pre = None
    if nofile:
        import resource
        pre = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)  # noqa: E731
    p = subprocess.run([os.path.join(bin_dir, "pc-stress")] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       preexec_fn=pre)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def stress_json(bin_dir, args):
    """pc-stress ARGS --json: its report as a dict; Fail on a non-zero exit
    or a report that is not JSON."""
    rc, out, err = run_stress(bin_dir, args + ["--json"])
    if rc != 0:
        raise Fail("pc-stress %s: exit %d: %s" % (" ".join(args), rc, err.strip()[-300:]))
    try:
        return json.loads(out)
    except ValueError:
        raise Fail("pc-stress %s: no JSON report: %r" % (" ".join(args), out[-300:]))


def now():
    return time.monotonic()


def pdeathsig():
    """Child side of Popen: die with the parent (Linux), even on SIGKILL of it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server:
    """A server process whose stdout/stderr are drained by threads (kept: last
    lines for the failure report); kill() is idempotent."""

    def __init__(self, argv):
        self.argv = argv
        self.lines = collections.deque(maxlen=80)
        self.port = None
        self._port_evt = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pdeathsig if sys.platform.startswith("linux") else None,
        )
        self.readers = []  # the drain threads (joined to read the last lines)
        for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            t = threading.Thread(target=self._drain, args=(stream, tag), daemon=True)
            t.start()
            self.readers.append(t)

    def _drain(self, stream, tag):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append("[%s] %s" % (tag, line))
            m = re.match(r"listening on (\S+):(\d+)$", line)
            if m and self.port is None:
                self.port = int(m.group(2))
                self._port_evt.set()
        self._port_evt.set()  # EOF: wake wait_listening

    def wait_listening(self, timeout):
        self._port_evt.wait(timeout)
        if self.port is None:
            raise Fail("server did not print 'listening on' within %.0f s (exit %s):\n%s"
                       % (timeout, self.proc.poll(), self.tail()))
        return self.port

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=30):
        return "\n".join(list(self.lines)[-n:]) or "(no output)"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------- #
# keep-alive load (runs in its own process: --load-worker)


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def set_budget(seconds):
    """End the run with Fail after seconds, or on SIGTERM/SIGINT (so every
    exit path goes through the caller's cleanup)."""

    def on_signal(sig, frame):
        raise Fail("interrupted by signal %d" % sig)

    def on_alarm(sig, frame):
        raise Fail("overall time budget of %d s exceeded" % seconds)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


SKIP = 77  # CTest's SKIP_RETURN_CODE for the process tests


class Skip(Exception):
    """Raised by a run that cannot test here (missing privilege or tier)."""


def run_checks(run, budget, max_shown=60):
    """The common end of a process test: run() under the overall time budget
    returns its list of failures (or raises Fail, or Skip); print them and
    return the exit status: 0 PASS, 1 FAIL, SKIP."""
    set_budget(budget)
    t_run = now()
    try:
        failures = run()
    except Skip as e:
        print("SKIPPED: %s" % e)
        return SKIP
    except Fail as e:
        failures = [str(e)]
    finally:
        signal.alarm(0)
    print("total time %.1f s" % (now() - t_run))
    if failures:
        for f in failures[:max_shown]:
            print("FAIL: " + f)
        if len(failures) > max_shown:
            print("FAIL: ... and %d more" % (len(failures) - max_shown))
        return 1
    print("PASS")
    return 0


def backend_main(run, budget):
    """main() of a script run as SCRIPT BIN_DIR [--backend NAME]: run(args)
    through run_checks (args.bin_dir, args.backend)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args()
    return run_checks(lambda: run(a), budget)
