#!/usr/bin/env python3
"""Latency probe timed by the kernel, not by the load generator.

A load generator's latency includes its own scheduling: on a 2-core machine it shares its
core with the backend, and at a fixed rate its p99 grows with that core's load, whoever it
measures. The probe sends a few requests per second beside the load, on one keep-alive
connection, and times each one from just before its send() to the kernel's receive timestamp
(SO_TIMESTAMPNS) of the segment that completed the answer. On loopback a send() delivers into
the contender's socket before it returns, and the receive timestamp is taken when the
contender's answer reaches the probe's socket, so the figure is the contender's share: its
wait before it reads the request, its work, its calls, and its answer's write. The probe's
own delays (waking, parsing) are left out.

Usage: probe.py URL RATE SECONDS OUTFILE
Writes one JSON object: count, errors, late (sends that left more than one interval behind
schedule because an answer was slow), and p50/p90/p99/p99.9/max in ms, both as the kernel
timed them and as the probe's own clock saw them
(keys "50", "90", "99", "99.9", "max").
"""

import json
import socket
import struct
import sys
import time
import urllib.parse

# Linux: SO_TIMESTAMPNS == SCM_TIMESTAMPNS (asm-generic/socket.h); Python lacks the names.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@ll")
READ_SIZE = 1 << 16


class ProbeError(Exception):
    """The contender closed the connection or answered something the probe cannot frame."""


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_vals:
        return None
    rank = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[rank]


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def kernel_stamp_ns(ancdata):
    """The receive timestamp in a recvmsg() answer, in ns since the epoch (or None)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None


def head_length(buf):
    """(length of the head with its blank line, status, Content-Length) once the head is in."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProbeError(f"bad status line: {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise ProbeError("chunked answers are not framed by the probe")
    if length is None:
        raise ProbeError("answer without Content-Length")
    return end + 4, int(parts[1]), length


def exchange(sock, request):
    """Sends one request, reads its answer: (status, sent_ns, kernel_ns, user_ns)."""
    sent = time.time_ns()
    sock.sendall(request)
    buf = b""
    framed = None
    stamp = None
    cmsg_space = socket.CMSG_SPACE(TIMESPEC.size)
    while True:
        data, ancdata, _flags, _addr = sock.recvmsg(READ_SIZE, cmsg_space)
        if not data:
            raise ProbeError("connection closed by the contender")
        stamp = kernel_stamp_ns(ancdata) or stamp
        buf += data
        if framed is None:
            framed = head_length(buf)
        if framed is not None and len(buf) >= framed[0] + framed[2]:
            break
    user = time.time_ns()
    return framed[1], sent, stamp if stamp is not None else user, user


def run(url, rate, seconds):
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    interval = 1.0 / rate
    kernel, user = [], []
    errors = late = 0
    sock = connect(host, port)
    start = time.monotonic()
    n = 0
    while True:
        due = start + n * interval
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        elif now - due > interval:
            late += 1
        n += 1
        try:
            status, sent, stamp, done = exchange(sock, request)
        except (OSError, ProbeError):
            errors += 1
            sock.close()
            sock = connect(host, port)
            continue
        if status != 200:
            errors += 1
            continue
        kernel.append((stamp - sent) / 1e6)
        user.append((done - sent) / 1e6)
    sock.close()
    return summary(kernel, user, errors, late)


def summary(kernel, user, errors, late):
    kernel.sort()
    user.sort()
    out = {"count": len(kernel), "errors": errors, "late": late}
    for name, vals in (("kernel", kernel), ("user", user)):
        out[name] = {key: percentile(vals, float(key)) for key in ("50", "90", "99", "99.9")}
        out[name]["max"] = vals[-1] if vals else None
    return out


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, rate, seconds, outfile = argv[0], float(argv[1]), float(argv[2]), argv[3]
    try:
        result = run(url, rate, seconds)
    except OSError as e:
        print(f"probe: {url}: {e}", file=sys.stderr)
        return 1
    with open(outfile, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0 if result["count"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
