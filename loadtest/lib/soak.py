#!/usr/bin/env python3
"""Soak test of ringgate (driven by loadtest/soak.sh).

For --duration seconds (30 minutes by default) ringgate (2 workers) serves mixed traffic
from asyncio clients, while the world around it changes:

  traffic   keep-alive GETs of 13 B and 1 MiB bodies; a new connection per GET; keep-alive
            GETs over TLS; 1 MiB POSTs; GETs on a route with an api_key policy (with the key:
            200, without: 401); GETs on a route with a cluster-scoped rate limit (200 or 429);
  reloads   the config is rewritten (a response header's value changes) and SIGHUP sent
            every --reload-every seconds (10);
  backends  three backend nginx processes behind one group; every --restart-every seconds
            (60) the next one is restarted the way a rolling deploy does it (SIGQUIT: it
            finishes what it is doing, stops listening, exits; started again 2 s later);
  redis     the rate limit's Redis is restarted once, at half time.

Every answer is checked: an idempotent request (GET) must get its expected status and its
whole body, every time; POSTs, which cannot be replayed, are reported apart. Every
--sample seconds the gateway's RSS and open file descriptors are sampled. After the warm-up
(--warmup, default a tenth of the run, at least 20 s) RSS must stay within 5% of its
post-warm-up value; with the traffic stopped, the descriptors must come back to what they
were before it started. Prints one JSON object; exits 1 when a criterion fails.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import log  # noqa: E402

API_KEY = "soak-key-0123456789abcdef"


def config(p, generation):
    targets = ", ".join(f'{{ addr = "127.0.0.1:{b}" }}' for b in p["backends"])
    return f"""
[server]
listen = ["127.0.0.1:{p['http']}"]
workers = 2
pin_workers = false

[server.limits]
max_body_bytes = "10MiB"

[[server.tls]]
listen = "127.0.0.1:{p['https']}"
certificates = [ {{ cert = "{p['cert']}", key = "{p['key']}" }} ]

[redis]
url = "redis://127.0.0.1:{p['redis']}"

[[upstreams]]
name = "pool"
targets = [ {targets} ]
pool = {{ max_idle_per_target = 256, idle_timeout = "5s" }}
timeouts = {{ connect = "1s", first_byte = "10s", idle = "10s" }}
retry = {{ attempts = 3, on = ["connect_error", "502", "503"], backoff = "5ms", max_backoff = "50ms" }}
passive = {{ consecutive_failures = 3, base_ejection = "2s", max_ejected_percent = 34 }}

[[consumers]]
name = "soak"
api_keys = ["{API_KEY}"]

[policies.key]
kind = "api_key"

[policies.limit]
kind = "rate_limit"
key = "route"
rate = "200/s"
burst = 100
scope = "cluster"

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
strip_prefix = "/api"
upstream = "pool"
policies = ["key"]

[[routes]]
name = "limited"
match = {{ path_prefix = "/limited" }}
strip_prefix = "/limited"
upstream = "pool"
policies = ["limit"]

[[routes]]
name = "generation"
match = {{ path = "/generation" }}
respond = {{ status = 200, body = "{generation}" }}

[[routes]]
name = "all"
upstream = "pool"
"""


class Stats:
    def __init__(self):
        self.ok = {}
        self.errors = {}
        self.examples = []

    def good(self, kind):
        self.ok[kind] = self.ok.get(kind, 0) + 1

    def bad(self, kind, what):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {what}")


async def read_response(reader, method="GET"):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = 0
    if method != "HEAD" and status not in (204, 304):
        if "content-length" in headers:
            length = int(headers["content-length"])
            await reader.readexactly(length)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                length += size
                if size == 0:
                    break
    close = "close" in headers.get("connection", "").lower()
    return status, length, close


class Client:
    """One traffic loop: its requests, their expected answers, keep-alive or not."""

    def __init__(self, stats, port, kind, path, expect, length=None, keep_alive=True,
                 tls=None, headers="", body=None, pause=0.0):
        self.stats, self.port, self.kind, self.path = stats, port, kind, path
        self.expect, self.length, self.keep_alive = expect, length, keep_alive
        self.tls, self.headers, self.body, self.pause = tls, headers, body, pause
        self.conn = None

    async def connect(self):
        return await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls,
                                    server_hostname="localhost" if self.tls else None), 10)

    async def once(self):
        method = "POST" if self.body is not None else "GET"
        if self.conn is None:
            self.conn = await self.connect()
        reader, writer = self.conn
        req = f"{method} {self.path} HTTP/1.1\r\nHost: localhost\r\n{self.headers}"
        if self.body is not None:
            req += f"Content-Length: {len(self.body)}\r\n"
        if not self.keep_alive:
            req += "Connection: close\r\n"
        writer.write(req.encode() + b"\r\n" + (self.body or b""))
        await writer.drain()
        status, length, close = await asyncio.wait_for(read_response(reader, method), 30)
        if close or not self.keep_alive:
            writer.close()
            self.conn = None
        return status, length

    async def run(self, stop):
        while not stop.is_set():
            try:
                status, length = await self.once()
                if status not in self.expect:
                    self.stats.bad(self.kind, f"status {status}")
                elif self.length is not None and status == 200 and length != self.length:
                    self.stats.bad(self.kind, f"body {length} bytes, expected {self.length}")
                else:
                    self.stats.good(self.kind)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    asyncio.LimitOverrunError, ValueError, IndexError) as e:
                self.stats.bad(self.kind, f"{type(e).__name__}: {e}")
                if self.conn is not None:
                    self.conn[1].close()
                    self.conn = None
            if self.pause:
                await asyncio.sleep(self.pause)


def clients(stats, p, tls):
    mib = b"p" * (1 << 20)
    c = [
        Client(stats, p["http"], "get-keepalive", "/small", {200}, 13, pause=0.002),
        Client(stats, p["http"], "get-keepalive", "/16k", {200}, 16384, pause=0.002),
        Client(stats, p["http"], "get-1mib", "/1m", {200}, 1 << 20, pause=0.05),
        Client(stats, p["http"], "get-new-connection", "/small", {200}, 13, keep_alive=False, pause=0.005),
        Client(stats, p["https"], "get-tls", "/small", {200}, 13, tls=tls, pause=0.005),
        Client(stats, p["https"], "get-tls-new-connection", "/small", {200}, 13, tls=tls,
               keep_alive=False, pause=0.05),
        Client(stats, p["http"], "get-policy", "/api/small", {200}, 13,
               headers=f"X-Api-Key: {API_KEY}\r\n", pause=0.005),
        Client(stats, p["http"], "get-policy-refused", "/api/small", {401}, pause=0.05),
        Client(stats, p["http"], "get-rate-limited", "/limited/small", {200, 429}, pause=0.002),
        Client(stats, p["http"], "post-1mib", "/post", {200}, 3, body=mib, pause=0.1),
    ]
    return c


class World:
    """The backends, Redis and ringgate, and the changes made to them."""

    def __init__(self, run, p, binary):
        self.run, self.p, self.binary = run, p, binary
        self.backends = {}
        self.generation = 0
        self.events = {"reloads": 0, "reload_failures": 0, "backend_restarts": 0, "redis_restarts": 0}

    def start_backend(self, i):
        self.backends[i] = self.run.backend(self.p["backends"][i], name=f"backend{i}")

    def restart_backend(self, i):
        proc = self.backends[i]
        proc.send_signal(signal.SIGQUIT)  # nginx graceful shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.run.forget(proc)
        time.sleep(2)
        self.start_backend(i)
        self.events["backend_restarts"] += 1

    def start_redis(self):
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.redis = self.run.spawn("redis", [redis, "--port", str(self.p["redis"]), "--save", "",
                                              "--appendonly", "no", "--bind", "127.0.0.1"])
        harness.wait_port(self.p["redis"], 10, self.redis)

    def restart_redis(self):
        self.redis.terminate()
        self.redis.wait(10)
        self.run.forget(self.redis)
        time.sleep(3)
        self.start_redis()
        self.events["redis_restarts"] += 1

    def start_ringgate(self):
        self.gateway, self.conf = self.run.ringgate(self.binary, config(self.p, 0), self.p["http"])

    def reload(self):
        self.generation += 1
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(config(self.p, self.generation))
        self.gateway.send_signal(signal.SIGHUP)
        self.events["reloads"] += 1


async def generation_seen(port, want, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /generation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            if data.endswith(str(want).encode()):
                return True
        except OSError:
            pass
        await asyncio.sleep(0.1)
    return False


async def soak(args, world, tls):
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    pid = world.gateway.pid
    fds_idle_before = harness.fd_count(pid)
    tasks = [asyncio.create_task(c.run(stop)) for c in clients(stats, world.p, tls)]
    t0 = time.monotonic()
    samples = []
    next_reload = t0 + args.reload_every
    next_restart = t0 + args.restart_every
    next_sample = t0
    redis_at = t0 + args.duration / 2
    restart_i = 0
    while (now := time.monotonic()) < t0 + args.duration:
        if now >= next_sample:
            samples.append({"t": round(now - t0), "rss_kb": harness.rss_kb(pid),
                            "fds": harness.fd_count(pid)})
            next_sample += args.sample
        if now >= next_reload:
            world.reload()
            if not await generation_seen(world.p["http"], world.generation):
                world.events["reload_failures"] += 1
            next_reload += args.reload_every
        if now >= next_restart:
            i = restart_i % len(world.p["backends"])
            log(f"restarting backend {i}")
            await loop.run_in_executor(None, world.restart_backend, i)
            restart_i += 1
            next_restart += args.restart_every
        if redis_at is not None and now >= redis_at:
            log("restarting redis")
            await loop.run_in_executor(None, world.restart_redis)
            redis_at = None
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # The clients' connections are gone; pooled upstream connections idle out after 5 s.
    settle = time.monotonic() + 20
    while time.monotonic() < settle and harness.fd_count(pid) > fds_idle_before + 1:
        await asyncio.sleep(0.5)
    fds = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    return stats, samples, fds_idle_before, harness.fd_count(pid), fds


def make_cert(run):
    cert, key = run.path("cert.pem"), run.path("key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument("--warmup", type=float, help="seconds excluded from the RSS check")
    ap.add_argument("--reload-every", type=float, default=10)
    ap.add_argument("--restart-every", type=float, default=60)
    ap.add_argument("--sample", type=float, default=5)
    ap.add_argument("--ringgate-bin")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else max(20.0, args.duration / 10)
    harness.raise_nofile(65536)
    binary = harness.find_ringgate(args.ringgate_bin)
    with harness.Run(keep=args.keep) as run:
        ports = harness.free_ports(6)
        cert, key = make_cert(run)
        p = {"http": ports[0], "https": ports[1], "redis": ports[2], "backends": ports[3:6],
             "cert": cert, "key": key}
        world = World(run, p, binary)
        for i in range(3):
            world.start_backend(i)
        world.start_redis()
        world.start_ringgate()
        tls = ssl.create_default_context(cafile=cert)
        log(f"soak for {args.duration:.0f} s (warm-up {warmup:.0f} s); load average {harness.load_average()}")
        stats, samples, fds_before, fds_after, fd_list = asyncio.run(soak(args, world, tls))
        after_warmup = [s for s in samples if s["t"] >= warmup]
        base = after_warmup[0]["rss_kb"] if after_warmup else 0
        rss_max = max((s["rss_kb"] for s in after_warmup), default=0)
        rss_min = min((s["rss_kb"] for s in after_warmup), default=0)
        drift = (rss_max - base) / base * 100 if base else 0.0
        idempotent_errors = sum(v for k, v in stats.errors.items() if not k.startswith("post"))
        checks = {
            "idempotent_errors_zero": idempotent_errors == 0,
            "rss_within_5_percent": base > 0 and rss_max <= base * 1.05 and rss_min >= base * 0.95,
            # +1: the rate limiter's Redis connection, opened once there is demand to report.
            "fds_back_to_idle": fds_after <= fds_before + 1,
            "every_reload_applied": world.events["reload_failures"] == 0,
            "gateway_alive": world.gateway.poll() is None,
        }
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "duration_s": args.duration,
            "warmup_s": warmup,
            "load_average_end": harness.load_average(),
            "answers_ok": stats.ok,
            "errors": stats.errors,
            "error_examples": stats.examples,
            "events": world.events,
            "rss_kb": {"after_warmup": base, "min": rss_min, "max": rss_max,
                       "end": samples[-1]["rss_kb"] if samples else 0,
                       "max_drift_percent": round(drift, 2)},
            "fds": {"idle_before": fds_before, "idle_after": fds_after,
                    "min_during": min((s["fds"] for s in samples), default=0),
                    "max_during": max((s["fds"] for s in samples), default=0),
                    "open_after": fd_list},
            "checks": checks,
            "samples": samples,
        }
        print(json.dumps(result, indent=2))
        sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
