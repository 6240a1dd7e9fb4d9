#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: pc-chat with 50 reading clients and one that never reads.

    chat_broadcast.py BIN_DIR [--readers N] [--seconds S] [--rss-mib M] [--backend NAME]

Starts BIN_DIR/pc-chat, connects N (default 50) clients that read everything
and one client that never reads (a 4 KiB receive buffer, set before connect).
Client 0 also talks: it sends numbered lines at full speed (as fast as the
server takes them) for S seconds (default 3), and at least until the
non-reader has been kicked, then an end line. Meanwhile the server's resident
memory is sampled from /proc every 20 ms.

Checks: every reading client receives every line, in order, then the end
line (no line lost, none reordered, none kicked); the non-reader is reset
(the server refused it by its per-client send limit and aborted it); the
server's RSS stays under M MiB (default 32) throughout; after SIGTERM the
server exits 0 within 10 s and reports exactly one client kicked.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an overall
alarm (default 60 s) ends the run; the server is killed on every exit path.
Python 3 standard library only; Linux.
"""

import argparse
import os
import re
import selectors
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proclib import Fail, Server, errname, now, set_budget  # noqa: E402

HOST = "127.0.0.1"
LINE = b"line %07d padding-padding-padding\n"
EXIT_LIMIT = 10.0
WELCOME = b"* welcome\n"


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


TCP_CLOSE = 7  # include/net/tcp_states.h


def tcp_state(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


class Reader:
    def __init__(self, i, sock):
        self.i = i
        self.sock = sock
        self.off = 0  # bytes received, all equal to the talker's stream so far
        self.done = False  # received the whole stream, end line included
        self.bad = None  # first problem seen
        self.closed = None


def check(r, d, stream, ended):
    """Every byte a reader receives must be the talker's stream at that offset
    (the same lines, in order, none missing): the talker's bytes are kept."""
    if r.bad is None and stream[r.off:r.off + len(d)] != d:
        want = bytes(stream[r.off:r.off + 60])
        r.bad = "at byte %d (line %d): got %r, want %r" % (
            r.off, r.off // len(LINE % 0), bytes(d[:60]), want)
    r.off += len(d)
    if ended and r.off >= len(stream):
        r.done = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bindir")
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rss-mib", type=float, default=32.0)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--budget", type=int, default=60)
    a = ap.parse_args()
    set_budget(a.budget)

    argv = [os.path.join(a.bindir, "pc-chat"), "--listen", HOST + ":0", "--threads", "2",
            "--patience", "2000"]
    if a.backend:
        argv += ["--backend", a.backend]
    srv = Server(argv)
    t0 = now()
    sent_lines = 0
    failures = []
    socks = []
    try:
        port = srv.wait_listening(10)
        rss0 = rss_kib(srv.proc.pid)
        readers = []
        for i in range(a.readers):
            s = socket.create_connection((HOST, port), timeout=10)
            s.setblocking(False)
            socks.append(s)
            readers.append(Reader(i, s))
        nr = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        nr.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        nr.connect((HOST, port))
        socks.append(nr)
        # every client is greeted once its server side is open: only then is
        # it in the broadcaster's snapshots (a line sent before would miss it)
        for r in readers:
            r.sock.setblocking(True)
            r.sock.settimeout(10)
            got = b""
            while len(got) < len(WELCOME):
                d = r.sock.recv(len(WELCOME) - len(got))
                if not d:
                    raise Fail("reader %d: closed before the greeting" % r.i)
                got += d
            if got != WELCOME:
                raise Fail("reader %d: greeted with %r" % (r.i, got))
            r.sock.setblocking(False)
        sel = selectors.DefaultSelector()
        for r in readers:
            sel.register(r.sock, selectors.EVENT_READ, r)
        talker = readers[0]
        sel.modify(talker.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, talker)

        # the talker's stream: numbered lines, generated as the socket takes them
        out = bytearray()
        stream = bytearray()  # everything the talker sent or will send
        sent_lines = 0
        talking = True
        t0 = now()
        kicked_at = None
        max_rss = rss0
        next_rss = now()
        finished = 0
        while finished < len(readers):
            t = now()
            if t >= next_rss:
                max_rss = max(max_rss, rss_kib(srv.proc.pid))
                next_rss = t + 0.02
                # kicked: the reset closed the socket (its unread bytes stay
                # readable, so a peek would not tell)
                if kicked_at is None and tcp_state(nr) == TCP_CLOSE:
                    kicked_at = t
            if talking and t - t0 >= a.seconds and kicked_at is not None:
                end = b"end %d\n" % sent_lines  # after the whole lines still in out
                out += end
                stream += end
                talking = False
            if not srv.alive():
                raise Fail("pc-chat exited during the run (status %s)" % srv.proc.poll())
            if t - t0 > a.budget - 15:
                stuck = ["%d: %d/%d bytes, %s" % (r.i, r.off, len(stream), r.closed or "open")
                         for r in readers if not r.done][:8]
                raise Fail("no end after %.0f s (%d lines sent, %d bytes of them unsent): the "
                           "non-reader was %s; readers not done: %s"
                           % (t - t0, sent_lines, len(out),
                              "kicked" if kicked_at else "never kicked", "; ".join(stuck)))
            for key, ev in sel.select(0.05):
                r = key.data
                if ev & selectors.EVENT_WRITE:
                    if talking and len(out) < 65536:
                        block = b"".join(LINE % (sent_lines + k) for k in range(1000))
                        out += block
                        stream += block
                        sent_lines += 1000
                    if out:
                        try:
                            n = r.sock.send(out)
                            del out[:n]
                        except BlockingIOError:
                            pass
                    if not talking and not out:
                        sel.modify(r.sock, selectors.EVENT_READ, r)
                if ev & selectors.EVENT_READ:
                    try:
                        d = r.sock.recv(262144)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        r.closed = errname(e)
                        d = b""
                    if not d:
                        r.closed = r.closed or "eof"
                        sel.unregister(r.sock)
                        finished += 1
                        continue
                    check(r, d, stream, not talking)
                    if r.done:
                        sel.unregister(r.sock)
                        finished += 1
        elapsed = now() - t0

        for r in readers:
            if r.bad:
                failures.append("reader %d: %s" % (r.i, r.bad))
            if not r.done:
                failures.append("reader %d: %d of %d bytes, then %s"
                                % (r.i, r.off, len(stream), r.closed))
        # the non-reader: reset by the server (what it never read is dropped)
        nr.settimeout(5)
        try:
            while nr.recv(65536):
                pass
            failures.append("non-reader: clean EOF, expected a reset (kick)")
        except ConnectionResetError:
            pass
        except OSError as e:
            failures.append("non-reader: %s, expected a reset" % errname(e))
        if max_rss > a.rss_mib * 1024:
            failures.append("server RSS reached %.1f MiB (limit %.0f MiB)"
                            % (max_rss / 1024.0, a.rss_mib))

        srv.proc.send_signal(signal.SIGTERM)
        try:
            rc = srv.proc.wait(EXIT_LIMIT)
        except Exception:
            rc = None
        for t in srv.readers:
            t.join(2)
        if rc != 0:
            failures.append("exit status after SIGTERM: %s (within %.0f s)" % (rc, EXIT_LIMIT))
        m = [re.search(r"(\d+) kicked", ln) for ln in srv.lines]
        m = [x for x in m if x]
        if not m:
            failures.append("no 'stopped: ... kicked' line:\n" + srv.tail())
        elif int(m[-1].group(1)) != 1:
            failures.append("server kicked %s clients, expected exactly 1" % m[-1].group(1))
        print("chat_broadcast: %d readers, %d lines (%.1f MB each) in %.1f s, non-reader kicked "
              "after %.1f s, server RSS %.1f -> max %.1f MiB"
              % (a.readers, sent_lines, sent_lines * len(LINE % 0) / 1e6, elapsed,
                 (kicked_at - t0) if kicked_at else -1, rss0 / 1024.0, max_rss / 1024.0))
    except Fail as e:
        failures.append(str(e))
    finally:
        srv.kill()
        for s in socks:
            s.close()
    if failures:
        for f in failures:
            print("FAIL:", f)
        print("--- server output (tail) ---\n" + srv.tail())
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
