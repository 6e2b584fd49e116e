#!/usr/bin/env python3
"""Slowloris and slow-read against ringgate (driven by loadtest/slow.sh).

Holds --conns slow connections open against ringgate (2 workers by default) for --duration
seconds, a third each of:
  head   a request head trickled one byte per --trickle seconds (slowloris);
  body   a POST with a 1 MiB Content-Length whose body is trickled the same way;
  noread a GET of a 1 MiB body whose response is never read (slow read).
A connection the gateway closes is opened again, so the count stays at --conns. Meanwhile
wrk sends normal GETs (/small, keep-alive) and reports their latency. Every second the
gateway's RSS and open file descriptors are sampled; after the slow clients go, the script
waits for the gateway to settle and samples again.

Prints one JSON object: the normal clients' requests and latency percentiles, the slow
connections held (and how often the gateway closed one), RSS and fds before, at peak and
after, and the load average.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import log  # noqa: E402

KINDS = ("head", "body", "noread")


def config(port, backend, workers):
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
workers = {workers}
pin_workers = false

[server.limits]
max_body_bytes = "10MiB"

[[upstreams]]
name = "backend"
targets = [ {{ addr = "127.0.0.1:{backend}" }} ]
pool = {{ max_idle_per_target = 1024, idle_timeout = "60s" }}
timeouts = {{ connect = "1s", first_byte = "10s", idle = "60s" }}

[[routes]]
name = "all"
upstream = "backend"
"""


class Slow:
    """The slow connections and their counters."""

    def __init__(self, port, trickle):
        self.port = port
        self.trickle = trickle
        self.open = {k: 0 for k in KINDS}
        self.closed_by_gateway = {k: 0 for k in KINDS}
        self.connect_errors = 0
        self.stop = False

    async def one(self, kind):
        while not self.stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(0.5)
                continue
            self.open[kind] += 1
            try:
                await getattr(self, kind)(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self.open[kind] -= 1
                writer.close()
            if not self.stop:
                self.closed_by_gateway[kind] += 1

    async def trickle_bytes(self, writer, reader, data):
        for i in range(len(data)):
            if self.stop or reader.at_eof():
                return
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(self.trickle)

    async def head(self, reader, writer):
        head = (f"GET /small HTTP/1.1\r\nHost: slow\r\nUser-Agent: slowloris\r\n"
                + "X-Pad: " + "a" * 4000 + "\r\n\r\n").encode()
        await self.trickle_bytes(writer, reader, head)

    async def body(self, reader, writer):
        writer.write(b"POST /post HTTP/1.1\r\nHost: slow\r\nContent-Length: 1048576\r\n\r\n")
        await writer.drain()
        await self.trickle_bytes(writer, reader, b"x" * 1048576)

    async def noread(self, reader, writer):
        writer.write(b"GET /1m HTTP/1.1\r\nHost: slow\r\n\r\n")
        await writer.drain()
        # Never read: wait until the gateway gives up on us (or the run ends).
        while not self.stop and not reader.at_eof():
            await asyncio.sleep(1)
            try:
                # Peek for EOF without consuming the body: a closed socket shows in the transport.
                if writer.transport.is_closing():
                    return
            except Exception:  # noqa: BLE001
                return

    def held(self):
        return sum(self.open.values())


def wrk_stats(text):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v if unit == "ms" else v * 1000
    pct = {}
    for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M):
        pct[f"p{p}_ms"] = round(dur(v), 2)
    reqs = re.search(r"(\d+) requests in", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return {
        "requests": int(reqs.group(1)) if reqs else 0,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1) if sock else "none",
        **pct,
    }


async def attack(args, port, pid):
    slow = Slow(port, args.trickle)
    samples = []
    per_kind = args.conns // len(KINDS)
    tasks = []
    t0 = time.monotonic()
    # Open them at a bounded rate so the accept queue is not the thing measured.
    for i in range(per_kind * len(KINDS)):
        tasks.append(asyncio.create_task(slow.one(KINDS[i % len(KINDS)])))
        if i % 500 == 499:
            await asyncio.sleep(0.2)
    while slow.held() < 0.95 * per_kind * len(KINDS) and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.5)
    log(f"{slow.held()} slow connections held after {time.monotonic() - t0:.1f} s: {slow.open}")
    wrk = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{args.normal}", f"-d{args.duration}s", "--latency",
        f"http://127.0.0.1:{port}/small",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        samples.append((harness.rss_kb(pid), harness.fd_count(pid), slow.held()))
        await asyncio.sleep(1)
    out, _ = await wrk.communicate()
    held_min = min(s[2] for s in samples) if samples else 0
    slow.stop = True
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return slow, samples, held_min, out.decode()


def one_round(args, port, proc, before):
    """One attack, then the wait for the gateway to close what the slow clients left."""
    slow, samples, held_min, wrk_out = asyncio.run(attack(args, port, proc.pid))
    # Let the gateway notice the closed sockets and free what they held.
    settle = time.monotonic() + 30
    after = (harness.rss_kb(proc.pid), harness.fd_count(proc.pid))
    while time.monotonic() < settle and after[1] > before[1] + 8:
        time.sleep(1)
        after = (harness.rss_kb(proc.pid), harness.fd_count(proc.pid))
    time.sleep(args.settle)
    after = (harness.rss_kb(proc.pid), harness.fd_count(proc.pid))
    log(f"round over: RSS peak {max(s[0] for s in samples)} kB, after {after[0]} kB")
    return {
        "held_min": held_min,
        "closed_by_gateway": slow.closed_by_gateway,
        "connect_errors": slow.connect_errors,
        "normal": wrk_stats(wrk_out),
        "rss_kb": {"peak": max(s[0] for s in samples), "after": after[0]},
        "fds": {"peak": max(s[1] for s in samples), "after": after[1]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=30, help="seconds of normal traffic under attack")
    ap.add_argument("--trickle", type=float, default=1.0, help="seconds between slow bytes")
    ap.add_argument("--normal", type=int, default=8, help="normal wrk connections")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="attacks one after another (a leak grows RSS from round to round)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait after the descriptors are closed before RSS is read")
    ap.add_argument("--ringgate-bin")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    limit = harness.raise_nofile(args.conns * 2 + 4096)
    if limit < args.conns + 1024:
        sys.exit(f"RLIMIT_NOFILE {limit} is too low for {args.conns} connections")
    binary = harness.find_ringgate(args.ringgate_bin)
    with harness.Run(keep=args.keep) as run:
        port, backend = harness.free_ports(2)
        run.backend(backend)
        proc, _ = run.ringgate(binary, config(port, backend, args.workers), port)
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", f"http://127.0.0.1:{port}/small"],
                       capture_output=True)  # warm up
        time.sleep(1)
        before = (harness.rss_kb(proc.pid), harness.fd_count(proc.pid))
        baseline = subprocess.run(
            ["wrk", "-t1", f"-c{args.normal}", "-d5s", "--latency", f"http://127.0.0.1:{port}/small"],
            capture_output=True, text=True).stdout
        rounds = [one_round(args, port, proc, before) for _ in range(args.rounds)]
        first = rounds[0]
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average": harness.load_average(),
            "workers": args.workers,
            "slow_connections": args.conns,
            "trickle_s": args.trickle,
            "held_min_during_run": first["held_min"],
            "closed_by_gateway": first["closed_by_gateway"],
            "connect_errors": first["connect_errors"],
            "normal_baseline": wrk_stats(baseline),
            "normal_under_attack": first["normal"],
            "rss_kb": {"before": before[0], **first["rss_kb"]},
            "fds": {"before": before[1], **first["fds"]},
            "ringgate_alive": proc.poll() is None,
        }
        if args.rounds > 1:
            result["later_rounds"] = rounds[1:]
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
