#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process-level test: a closing connection's last bytes carry its FIN.

    fin_with_data.py BIN_DIR [--backend NAME]

pc-http on loopback, every segment of the port watched with an AF_PACKET
socket on lo (root), checks that:

  close     a request with "Connection: close" (pc_conn_close_nolinger: the
            FIN comes from close()) is answered by one segment that carries
            the whole response and the FIN; no bare FIN follows;
  graceful  a malformed request is answered 400 and closed gracefully
            (pc_conn_close: the FIN comes from shutdown()): the 400's last
            segment carries the FIN, and the client reads the whole answer
            then EOF;
  keepalive five requests on one keep-alive connection are each answered
            at once (no answer is held back waiting for a FIN: each within
            0.1 s), and none of those segments carries a FIN.

Needs root for the capture (exits 77, "skipped", otherwise). Bounded by an
overall alarm (30 s); the server is killed on every exit path. Python 3
standard library only; Linux.
"""

import os
import socket
import struct
import sys
import time

from proclib import GET_ROOT, Checks, Server, Skip, backend_main, read_response, read_to_eof  # noqa: E402

ETH_P_ALL = 0x0003
FIN = 0x01


SO_ATTACH_FILTER = 26


def port_filter(port):
    """A classic BPF program keeping IPv4 TCP segments to or from port (what
    tcpdump compiles for "ip and tcp port PORT" on lo's 14-byte header)."""
    ins = [(0x28, 0, 0, 12),        # ldh [12]: ethertype
           (0x15, 0, 10, 0x0800),   # IPv4, else drop
           (0x30, 0, 0, 23),        # ldb [23]: protocol
           (0x15, 0, 8, 6),         # TCP, else drop
           (0x28, 0, 0, 20),        # ldh [20]: fragment offset
           (0x45, 6, 0, 0x1fff),    # a later fragment: drop
           (0xb1, 0, 0, 14),        # ldxb 4*([14]&0xf): IP header length
           (0x48, 0, 0, 14),        # ldh [x+14]: source port
           (0x15, 2, 0, port),      # ours: keep
           (0x48, 0, 0, 16),        # ldh [x+16]: destination port
           (0x15, 0, 1, port),      # ours: keep, else drop
           (0x06, 0, 0, 0x40000),   # keep
           (0x06, 0, 0, 0)]         # drop
    return b"".join(struct.pack("HBBI", *i) for i in ins)


class Capture:
    """Segments on lo to or from one TCP port: (src port, dst port, flags,
    payload length), each once (the copy the receiving side sees). The
    kernel keeps only that port's segments (a socket filter attached before
    the socket is bound): the rest of lo's traffic, other tests' bulk
    transfers on a shared machine, filled the socket's buffer and segments
    of the port were dropped, seen as none at all."""

    def __init__(self, port):
        import ctypes

        self.port = port
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # nothing until bound
        prog = port_filter(port)
        self._prog = ctypes.create_string_buffer(prog, len(prog))
        fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(self._prog))
        self.s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.s.bind(("lo", ETH_P_ALL))
        self.s.settimeout(0.05)

    def take(self, seconds):
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, addr = self.s.recvfrom(65536)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            seg = self.parse(data[14:])  # lo has a 14-byte Ethernet-shaped header
            if seg and self.port in seg[:2]:
                out.append(seg)
        return out

    @staticmethod
    def parse(ip):
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
            return None
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:]
        sport, dport = struct.unpack("!HH", tcp[:4])
        doff = (tcp[12] >> 4) * 4
        return sport, dport, tcp[13], total - ihl - doff

    def close(self):
        self.s.close()


def server_segments(segs, port, cport):
    return [(f, n) for (sp, dp, f, n) in segs if sp == port and dp == cport]


def exchange(cap, port, request, name):
    """Send request on a new connection, read to EOF, close. Returns the
    answer, the server's segments with data and its bare FINs, as (flags,
    bytes)."""
    c = socket.create_connection(("127.0.0.1", port), 5)
    cport = c.getsockname()[1]
    c.sendall(request)
    body = read_to_eof(c)
    c.close()
    segs = server_segments(cap.take(0.3), port, cport)
    print("%s: server segments (flags, bytes) %s" % (name, segs))
    return (body, [(f, n) for (f, n) in segs if n > 0],
            [(f, n) for (f, n) in segs if n == 0 and f & FIN])


def run(a):
    if os.geteuid() != 0:
        raise Skip("fin_with_data.py needs root (an AF_PACKET capture on lo)")
    check = Checks()

    http = os.path.join(a.bin_dir, "pc-http")
    srv = Server([http, "--listen", "127.0.0.1:0", "--threads", "2", "--backend", a.backend])
    try:
        port = srv.wait_listening(10)
        cap = Capture(port)
        try:
            # close: the answer and the FIN in one segment
            body, data, bare_fin = exchange(
                cap, port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "close")
            check(body.startswith(b"HTTP/1.1 200") and len(data) == 1 and
                  data[0][1] == len(body), "close: the whole answer in one segment")
            check(len(data) == 1 and data[0][0] & FIN and not bare_fin,
                  "close: that segment carries the FIN, no bare FIN follows")

            # graceful: a 400, then shutdown(): the FIN rides on the 400
            body, data, bare_fin = exchange(cap, port, b"BOGUS\r\n\r\n", "graceful")
            check(body.startswith(b"HTTP/1.1 400") and sum(n for _, n in data) == len(body),
                  "graceful: the whole 400 read, then EOF")
            check(data and data[-1][0] & FIN and not bare_fin,
                  "graceful: its last segment carries the FIN, no bare FIN follows")

            # keep-alive: nothing held back
            c = socket.create_connection(("127.0.0.1", port), 5)
            cport = c.getsockname()[1]
            worst = 0.0
            ok = True
            for _ in range(5):
                t0 = time.monotonic()
                c.sendall(GET_ROOT)
                r = read_response(c)
                worst = max(worst, time.monotonic() - t0)
                ok = ok and r is not None and r[0] == 200
            segs = server_segments(cap.take(0.2), port, cport)
            c.close()
            check(ok and worst < 0.1, "keepalive: 5 answers, each at once (slowest %.3f s)" % worst)
            check(not any(f & FIN for f, _ in segs), "keepalive: no FIN while the connection is open")
        finally:
            cap.close()
    finally:
        srv.kill()
    return check.failures


if __name__ == "__main__":
    sys.exit(backend_main(run, 30))
