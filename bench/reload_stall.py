#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How long a rule reload holds up pc-http's requests, per kernel-filter tier.

    reload_stall.py BIN_DIR [V4] [V6] [--rounds N]

Writes a random deny list of V4 IPv4 + V6 IPv6 prefixes (default 1000000 +
100000, bench/gen_prefixes.py; none covers loopback) to a temporary
directory, then for each setting - kernel filter off, cbpf, ebpf, and ebpf
with --per-source-max 100 (the accept thread and the workers mark sources in
the kernel) - starts BIN_DIR/pc-http with --rules on that list, and from two
client threads requests "/" and "/metrics" (a new connection each, 5 ms
apart) for 1 s, then sends SIGHUP (a reload of the same list: parse, compile,
swap) and goes on for 5 s. Prints, per setting and round, the slowest request
before and during the reload. A reload that stalls the accept thread or a
worker shows as a slowest request near the reload's own length (0.3-0.45 s
here with 1.1M prefixes before 0db6287); one that does not, as with no
kernel filter. The notes column gives the tier pc-http says it runs (its
"kernel filter" log line): a setting the kernel or the list refuses runs
another tier - cbpf holds a few thousand prefixes at most, so with the
default list "cbpf" runs off after a cbpf compile that fails, and each
reload tries that compile again. Needs root for the kernel tiers. Measures
only: exits 0 whatever the figures.
Loopback only; every process it starts is stopped on exit.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(port, path):
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.settimeout(10)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
    return time.monotonic() - t


def run(bindir, rules, extra):
    port = free_port()
    cmd = [os.path.join(bindir, "pc-http"), "--listen", "127.0.0.1:%d" % port,
           "--rules", rules, "--threads", "2"] + extra
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = []  # pc-http's stderr, read all along (a full pipe would block it)

    def drain():
        for line in srv.stderr:
            log.append(line.decode(errors="replace").rstrip())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if srv.poll() is not None:
                    reader.join(5)
                    return None, "\n".join(log)
                time.sleep(0.1)
        worst = {"before": 0.0, "during": 0.0}
        phase = ["before"]
        stop = threading.Event()
        errors = []

        def loop(path):
            while not stop.is_set():
                try:
                    d = request(port, path)
                except OSError as e:
                    errors.append(repr(e))
                    d = 10.0
                k = phase[0]
                worst[k] = max(worst[k], d)
                time.sleep(0.005)

        threads = [threading.Thread(target=loop, args=(p,)) for p in (b"/", b"/metrics")]
        for t in threads:
            t.start()
        time.sleep(1)
        phase[0] = "during"
        srv.send_signal(signal.SIGHUP)
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join()
        tier = next((ln for ln in log if "kernel filter" in ln), "kernel filter: not said")
        return (worst, errors, tier[tier.find("kernel filter"):]), None
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        reader.join(5)


def main():
    args = [a for a in sys.argv[1:]]
    rounds = 1
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i:i + 2]
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    bindir = args[0]
    if not os.access(os.path.join(bindir, "pc-http"), os.X_OK):
        print("no %s (build the pc-http target)" % os.path.join(bindir, "pc-http"), file=sys.stderr)
        return 2
    v4 = args[1] if len(args) > 1 else "1000000"
    v6 = args[2] if len(args) > 2 else "100000"
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_prefixes.py"), d, v4, v6],
                       check=True, stdout=subprocess.DEVNULL)
        rules = os.path.join(d, "rules.txt")
        settings = [("off", ["--kernel-filter", "off"]),
                    ("cbpf", ["--kernel-filter", "cbpf"]),
                    ("ebpf", ["--kernel-filter", "ebpf"]),
                    ("ebpf+max", ["--kernel-filter", "ebpf", "--per-source-max", "100"])]
        print("%-9s %5s %12s %12s  %s" % ("setting", "round", "before_ms", "during_ms", "notes"))
        for r in range(rounds):
            for name, extra in settings:
                res, err = run(bindir, rules, extra)
                if res is None:
                    print("%-9s %5d %12s %12s  pc-http did not start: %s"
                          % (name, r + 1, "-", "-", "".join(err.strip().splitlines()[-1:])))
                    continue
                worst, errors, tier = res
                note = tier[:70] + ("; %d request errors" % len(errors) if errors else "")
                print("%-9s %5d %12.1f %12.1f  %s" % (name, r + 1, worst["before"] * 1e3,
                                                     worst["during"] * 1e3, note))
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
