#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: SIGTERM to pc-echo under traffic drains gracefully.

    sigterm_drain.py BIN_DIR [--conns N] [--stream-seconds S] [--backend NAME]

Starts BIN_DIR/pc-echo, opens 50 connections that each stream deterministic
pseudo-random bytes (seeded per connection) while reading the echo (one
non-blocking selector loop), sends SIGTERM after ~1.5 s of streaming, and keeps
every client sending until its send fails or the server's FIN arrives, and
reading until EOF. On the FIN a client stops sending, shuts down its write side
and only then closes (so the client itself never causes a reset).

Checks, for every connection: it ended with a clean EOF (FIN) after the
SIGTERM, never a reset (ECONNRESET on recv fails; a send error after the
server's FIN is fine: sending stops, reading goes on); the bytes received are
exactly a prefix of the bytes sent; more than 0 bytes were echoed. And the
process exits with status 0 within 10 s of the SIGTERM.

Exit 0 on pass, 1 on failure (every failed check printed). Bounded: an overall
alarm (default 30 s) ends the run; the server is killed on every exit path.
Python 3 standard library only; Linux.
"""

import argparse
import collections
import os
import random
import selectors
import signal
import socket
import subprocess
import sys

from proclib import Fail, Server, errname, now, run_checks  # noqa: E402

HOST = "127.0.0.1"
BLOCK = 16384  # the stream is generated in fixed blocks: sender and checker agree
WINDOW = 256 * 1024  # at most this many bytes sent and not yet echoed, per connection
EXIT_LIMIT = 10.0  # s from SIGTERM to process exit


class Conn:
    def __init__(self, i, sock, seed):
        self.i = i
        self.sock = sock
        self.seed = seed
        self.gen_send = random.Random(seed)
        self.gen_check = random.Random(seed)
        self.out = b""
        self.sent = 0
        self.recvd = 0
        self.expect = bytearray()
        self.mismatch = None  # stream offset of the first wrong byte
        self.sending = True
        self.send_err = None  # (errno name, whether the FIN had been seen)
        self.end = None  # "eof", "reset", "recv:<err>", "not ended"
        self.t_end = None
        self.mask = 0

    def next_chunk(self):
        if not self.out:
            self.out = self.gen_send.randbytes(BLOCK)
        return self.out

    def check(self, data):
        n = len(data)
        while len(self.expect) < n:
            self.expect += self.gen_check.randbytes(BLOCK)
        if self.mismatch is None and self.expect[:n] != data:
            exp = self.expect[:n]
            k = next(j for j in range(n) if exp[j] != data[j])
            self.mismatch = self.recvd + k
        del self.expect[:n]
        self.recvd += n


def run(args):
    exe = os.path.join(args.bin_dir, "pc-echo")
    if not os.access(exe, os.X_OK):
        raise Fail("no executable %s" % exe)
    argv = [exe, "--listen", HOST + ":0", "--threads", str(args.threads)]
    if args.backend:
        argv += ["--backend", args.backend]
    print("server: %s" % " ".join(argv), flush=True)
    srv = Server(argv)
    state = {"srv": srv}
    try:
        port = srv.wait_listening(15.0)
        print("pc-echo listening on %s:%d" % (HOST, port), flush=True)
        conns = []
        sel = selectors.DefaultSelector()
        for i in range(args.conns):
            try:
                s = socket.create_connection((HOST, port), timeout=5)
            except OSError as e:
                raise Fail("connect %d failed: %s" % (i, e))
            s.setblocking(False)
            conns.append(Conn(i, s, seed=0x5EED0000 + i * 7919))

        def want(c):
            m = selectors.EVENT_READ
            if c.sending and c.sent - c.recvd < WINDOW:
                m |= selectors.EVENT_WRITE
            return m

        for c in conns:
            c.mask = want(c)
            sel.register(c.sock, c.mask, c)

        def finish(c, how):
            c.end, c.t_end = how, now()
            c.sending = False
            sel.unregister(c.sock)
            if how == "eof":
                try:  # our FIN, then close: nothing unread, so no reset from us
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            c.sock.close()

        t0 = now()
        t_term = t0 + args.stream_seconds
        t_sig = None
        t_exit = None
        deadline = t_term + EXIT_LIMIT + 2.0
        open_n = len(conns)
        sent_at_term = 0
        while True:
            t = now()
            if t_sig is None and t >= t_term:
                sent_at_term = sum(c.sent for c in conns)
                srv.proc.send_signal(signal.SIGTERM)
                t_sig = now()
                print("SIGTERM after %.2f s of streaming (%.1f MiB sent so far)"
                      % (t_sig - t0, sent_at_term / 1048576.0), flush=True)
            if t_sig is not None and t_exit is None and srv.proc.poll() is not None:
                t_exit = now()
            if open_n == 0 or t >= deadline:
                break
            if t_sig is not None and t - t_sig > EXIT_LIMIT and srv.proc.poll() is not None:
                break  # the server is gone; what is still open will never end
            timeout = 0.05 if t_sig is not None else max(0.0, min(0.05, t_term - t))
            for key, ev in sel.select(timeout):
                c = key.data
                if c.end is not None:
                    continue
                if ev & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(262144)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except ConnectionResetError:
                        finish(c, "reset")
                        open_n -= 1
                        continue
                    except OSError as e:
                        finish(c, "recv:" + errname(e))
                        open_n -= 1
                        continue
                    if data == b"":
                        finish(c, "eof")
                        open_n -= 1
                        continue
                    if data:
                        c.check(data)
                if ev & selectors.EVENT_WRITE and c.sending:
                    room = WINDOW - (c.sent - c.recvd)
                    chunk = c.next_chunk()
                    try:
                        n = c.sock.send(chunk[:room] if room < len(chunk) else chunk)
                        c.sent += n
                        c.out = chunk[n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError as e:
                        # Stop sending, keep reading to EOF. Linux reports a reset
                        # that came after the peer's FIN (CLOSE_WAIT) as EPIPE:
                        # fine. ECONNRESET means the peer reset an established
                        # connection; the recv that follows then reads a plain
                        # EOF, so this is where such a reset is seen.
                        c.send_err = errname(e)
                        c.sending = False
                m = want(c)
                if m != c.mask:
                    c.mask = m
                    sel.modify(c.sock, m, c)
        for c in conns:
            if c.end is None:
                c.end = "not ended"
                try:
                    sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
                c.sock.close()
        sel.close()

        # the process: exit status 0 within EXIT_LIMIT s of the SIGTERM
        failures = []
        if t_sig is None:
            raise Fail("SIGTERM was never sent (all connections ended before it?)")
        if t_exit is None:
            try:
                srv.proc.wait(max(0.0, t_sig + EXIT_LIMIT - now()))
                t_exit = now()
            except subprocess.TimeoutExpired:
                failures.append("pc-echo still running %.0f s after SIGTERM" % EXIT_LIMIT)
        rc = srv.proc.poll()
        for t in srv.readers:
            t.join(2.0)
        if rc is not None and rc != 0:
            failures.append("pc-echo exited with status %d (want 0)" % rc)
        if t_exit is not None and t_exit - t_sig > EXIT_LIMIT:
            failures.append("pc-echo exited %.2f s after SIGTERM (limit %.0f s)"
                            % (t_exit - t_sig, EXIT_LIMIT))

        # every connection
        ends = collections.Counter(c.end for c in conns)
        send_errs = collections.Counter(c.send_err for c in conns if c.send_err)
        tot_sent = sum(c.sent for c in conns)
        tot_recv = sum(c.recvd for c in conns)
        fins = [c.t_end - t_sig for c in conns if c.end == "eof"]
        per = sorted(c.recvd for c in conns)
        print("connections: %d; endings: %s; send errors: %s"
              % (len(conns), ", ".join("%s %d" % kv for kv in sorted(ends.items())),
                 dict(send_errs) or "none"))
        print("bytes: sent %.1f MiB, echoed %.1f MiB (%d bytes); per connection echoed "
              "min %.1f KiB, max %.1f KiB"
              % (tot_sent / 1048576.0, tot_recv / 1048576.0, tot_recv, per[0] / 1024.0,
                 per[-1] / 1024.0))
        if fins:
            print("FIN seen %.3f .. %.3f s after SIGTERM" % (min(fins), max(fins)))
        print("pc-echo exit status %s, %s after SIGTERM"
              % (rc, "%.3f s" % (t_exit - t_sig) if t_exit is not None else "not exited"),
              flush=True)
        for line in srv.lines:
            if "stopped" in line or "still open" in line or "resetting" in line:
                print("  server: " + line)
        for c in conns:
            what = []
            if c.end != "eof":
                what.append("ended with %s, not a clean EOF" % c.end)
            elif c.send_err == "ECONNRESET":
                what.append("reset: ECONNRESET on send before any FIN (then EOF)")
            elif c.t_end < t_sig:
                what.append("FIN %.3f s before the SIGTERM" % (t_sig - c.t_end))
            if c.mismatch is not None:
                what.append("echo differs from the sent stream at byte %d" % c.mismatch)
            if c.recvd > c.sent:
                what.append("received %d bytes, more than the %d sent" % (c.recvd, c.sent))
            if c.recvd == 0:
                what.append("nothing echoed")
            if what:
                failures.append("connection %d (seed %#x; sent %d, echoed %d): %s"
                                % (c.i, c.seed, c.sent, c.recvd, "; ".join(what)))
        return failures
    finally:
        state["srv"].kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir", help="directory holding pc-echo (<build>/bin)")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--stream-seconds", type=float, default=1.5,
                    help="streaming before the SIGTERM")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", help="pc-echo --backend (default: its own choice)")
    ap.add_argument("--budget", type=int, default=30, help="overall time limit, s")
    args = ap.parse_args()

    return run_checks(lambda: run(args), args.budget)

if __name__ == "__main__":
    sys.exit(main())
