#!/usr/bin/env python3
"""Small helpers for loadtest/compare.sh (standard library only).

Subcommands:
  render TEMPLATE OUT KEY=VALUE...   fill @KEY@ placeholders; fails on any left over
  freeport [N]                       print N free loopback TCP ports
  wait-port PORT TIMEOUT_S [PID]     wait until 127.0.0.1:PORT accepts (fails early if PID dies)
  descendants PID                    print `pid comm` of each descendant of PID
  snap PID...                        JSON snapshot: CPU ticks and RSS of each PID plus all of its
                                     descendants, and /proc/stat per-CPU counters
  idle PORT COUNT PATH PID...        open COUNT keep-alive connections to PORT, send one
                                     `GET PATH` on each, keep them idle, and report the RSS of
                                     PID (+descendants) before, 2 s and 6 s after as JSON
  idle-tls PORT COUNT PATH PID...    the same over TLS (certificate not verified): idle TLS
                                     keep-alive connections
  check-post PORT                    pipeline a 4 KiB POST and a GET on one connection and
                                     verify both answers arrive (the body was fully consumed)
  check-json URL KEY...              GET URL must answer 200 with a JSON object holding every
                                     dotted KEY (s11/s12's sanity check)
  h2load-summary TEXT LOG            h2load's output and --log-file as one `LTJSON {...}` line
                                     in lib/wrk.lua's shape (s16, s17)
  grpc-message BYTES                 print one gRPC message (5-byte prefix + a protobuf with a
                                     BYTES-byte field 1) to stdout: s17's request body
  json-part NAME BYTES               print a JSON object of about BYTES bytes (a composite's
                                     part in s11/s12): id, name, and a list of items
"""

import asyncio
import json
import os
import re
import resource
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- templates

def cmd_render(args):
    tmpl, out, *pairs = args
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        values[key] = value
    with open(tmpl, encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if left:
        sys.exit(f"render {tmpl}: placeholders without a value: {', '.join(left)}")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------------- JSON parts

def cmd_json_part(args):
    name, size = args[0], int(args[1])
    doc = {"id": name, "name": f"part {name}", "updated": "2026-12-07T00:00:00Z", "items": []}
    i = 0
    while len(json.dumps(doc, separators=(",", ":"))) < size - 60:
        doc["items"].append({"sku": f"{name}-{i:04d}", "qty": i % 7, "price": 100 + i})
        i += 1
    print(json.dumps(doc, separators=(",", ":")))


# --------------------------------------------------------------------------- ports

def cmd_freeport(args):
    n = int(args[0]) if args else 1
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def cmd_wait_port(args):
    port, timeout = int(args[0]), float(args[1])
    pid = int(args[2]) if len(args) > 2 else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            sys.exit(f"process {pid} exited before 127.0.0.1:{port} accepted connections")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"127.0.0.1:{port} did not accept connections within {timeout}s")


# --------------------------------------------------------------------------- /proc

def children_map():
    """ppid -> [pid] for every process on the machine."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def tree(pid, kids=None):
    """pid and all of its descendants (nginx: master + workers; ringgate: one process)."""
    kids = children_map() if kids is None else kids
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cpu_split(pid):
    """(user, sys) ticks of a process (all its threads), (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    # After the comm field: state(0) ppid(1) ... utime(11) stime(12)
    return int(fields[11]), int(fields[12])


def proc_cpu_ticks(pid):
    """user+sys ticks of a process (all its threads), 0 if it is gone."""
    return sum(proc_cpu_split(pid))


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_counters():
    """/proc/stat per-CPU (busy, total) jiffies."""
    cpus = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if re.match(r"cpu\d+ ", line):
                name, *vals = line.split()
                vals = [int(v) for v in vals[:8]]
                idle = vals[3] + vals[4]  # idle + iowait
                cpus[name[3:]] = [sum(vals) - idle, sum(vals)]
    return cpus


def snapshot(pids):
    kids = children_map()
    procs = []
    for pid in pids:
        procs.extend(tree(pid, kids))
    return {
        "time": time.time(),
        "pids": procs,
        "cpu_s": sum(proc_cpu_ticks(p) for p in procs) / CLK_TCK,
        "user_s": sum(proc_cpu_split(p)[0] for p in procs) / CLK_TCK,
        "sys_s": sum(proc_cpu_split(p)[1] for p in procs) / CLK_TCK,
        "rss_kb": sum(proc_status_kb(p, "VmRSS") for p in procs),
        "hwm_kb": sum(proc_status_kb(p, "VmHWM") for p in procs),
        "cpus": cpu_counters(),
    }


def cmd_descendants(args):
    """Print `pid comm` for every descendant of PID (not PID itself)."""
    pid = int(args[0])
    for p in tree(pid)[1:]:
        try:
            with open(f"/proc/{p}/comm", encoding="utf-8", errors="replace") as f:
                print(p, f.read().strip())
        except OSError:
            pass


def cmd_snap(args):
    print(json.dumps(snapshot([int(a) for a in args])))


# --------------------------------------------------------------------------- idle connections

def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def read_response(reader):
    """Read one HTTP/1.1 response with a Content-Length or chunked body; return status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower().endswith("chunked"):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def open_idle(port, count, path, concurrency=256, tls=None):
    conns, errors = [], {}
    sem = asyncio.Semaphore(concurrency)
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode()

    async def one():
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=tls), 10)
                writer.write(request)
                status = await asyncio.wait_for(read_response(reader), 10)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                conns.append((reader, writer))
            except Exception as e:  # noqa: BLE001 - counted and reported
                key = type(e).__name__ + (f": {e}" if str(e) else "")
                errors[key[:80]] = errors.get(key[:80], 0) + 1

    await asyncio.gather(*(one() for _ in range(count)))
    return conns, errors


IDLE_LATE_S = 6  # seconds after the last connection opened for the second RSS reading


def cmd_idle(args, tls=None):
    port, count, path, *pids = args
    port, count, pids = int(port), int(count), [int(p) for p in pids]
    limit = raise_nofile(count + 256)
    if limit < count + 64:
        sys.exit(f"RLIMIT_NOFILE is {limit}, too low for {count} connections")

    async def main():
        before = snapshot(pids)
        t0 = time.monotonic()
        conns, errors = await open_idle(port, count, path, tls=tls)
        open_s = time.monotonic() - t0
        await asyncio.sleep(2)  # let the contender settle (lazy frees, pool trims)
        after = snapshot(pids)
        # And later: memory a contender gives back on a timer (ringgate's heap return runs
        # from a one-second sweep) shows here, not in the 2 s figure.
        await asyncio.sleep(IDLE_LATE_S - 2)
        late = snapshot(pids)
        # Are the connections still open after the wait? Anything readable now is EOF.
        closed = sum(1 for r, _ in conns if r.at_eof())
        for _, w in conns:
            w.close()
        await asyncio.sleep(1)
        released = snapshot(pids)
        opened = len(conns)
        delta_kb = after["rss_kb"] - before["rss_kb"]
        print(json.dumps({
            "requested": count,
            "opened": opened,
            "closed_by_server": closed,
            "errors": errors,
            "open_seconds": round(open_s, 2),
            "rss_before_kb": before["rss_kb"],
            "rss_idle_kb": after["rss_kb"],
            "rss_idle_late_kb": late["rss_kb"],
            "rss_after_close_kb": released["rss_kb"],
            "delta_kb": delta_kb,
            "per_conn_bytes": round(delta_kb * 1024 / opened, 1) if opened else None,
            "per_conn_bytes_late": (round((late["rss_kb"] - before["rss_kb"]) * 1024 / opened, 1)
                                    if opened else None),
            "pids": after["pids"],
        }))

    asyncio.run(main())


def cmd_idle_tls(args):
    import ssl
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])
    cmd_idle(args, tls=tls)


# --------------------------------------------------------------------------- body check

def cmd_check_post(args):
    port = int(args[0])
    body = b"x" * 4096
    req = (f"POST /post HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
           f"Content-Type: application/octet-stream\r\n\r\n").encode() + body
    req += b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req)
        s1 = await asyncio.wait_for(read_response(reader), 5)
        s2 = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        if (s1, s2) != (200, 200):
            sys.exit(f"POST+GET on one connection answered {s1}, {s2}")

    asyncio.run(main())


def cmd_check_json(args):
    """GET URL must answer 200 with a JSON object that has every dotted KEY (a.b: key b of
    the object under a)."""
    import urllib.request
    url, keys = args[0], args[1:]
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except Exception as e:  # noqa: BLE001 (any failure is the finding)
        sys.exit(f"GET {url}: {e}")
    if status != 200:
        sys.exit(f"GET {url} answered {status}")
    try:
        doc = json.loads(body)
    except ValueError as e:
        sys.exit(f"GET {url}: not JSON ({e}): {body[:80]!r}")
    for key in keys:
        node = doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                sys.exit(f"GET {url}: no {key!r} in the JSON answer")
            node = node[part]


# --------------------------------------------------------------------------- h2load

PERCENTILES = [1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999]
H2LOAD_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def h2load_counts(text):
    """The figures of h2load's summary: seconds, status classes, failures, traffic bytes."""
    out = {"seconds": None, "status": {}, "failed": 0, "errored": 0, "timeout": 0, "bytes": 0}
    m = re.search(r"finished in ([\d.]+)(us|ms|s),", text)
    if m:
        out["seconds"] = float(m.group(1)) * H2LOAD_UNITS[m.group(2)]
    m = re.search(r"requests: .*?(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        out["failed"], out["errored"], out["timeout"] = (int(g) for g in m.groups())
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"), (int(g) for g in m.groups())))
    m = re.search(r"traffic: \S+ \((\d+)\) total", text)
    if m:
        out["bytes"] = int(m.group(1))
    return out


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return 0
    rank = max(1, int(-(-p * len(sorted_vals) // 100)))
    return sorted_vals[min(rank, len(sorted_vals)) - 1]


def cmd_h2load_summary(args):
    """h2load's output (text) and its --log-file (one row per request: start µs, status, µs
    to the end of the response) as one `LTJSON {...}` line in lib/wrk.lua's shape."""
    text_path, log_path = args
    with open(text_path, encoding="utf-8", errors="replace") as f:
        counts = h2load_counts(f.read())
    if counts["seconds"] is None:
        sys.exit(f"h2load-summary: no 'finished in' line in {text_path}")
    times = []
    try:
        with open(log_path, encoding="ascii", errors="replace") as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3 and cols[2].strip().isdigit():
                    times.append(int(cols[2]))
    except OSError:
        pass
    times.sort()
    ok = counts["status"].get("2xx", 0)
    # h2load's `failed` is `errored` plus 4xx/5xx answers, and `errored` includes `timeout`:
    # non-2xx answers and errored requests are the whole of it.
    errors = {"status": sum(counts["status"].values()) - ok, "errored": counts["errored"]}
    mean = sum(times) / len(times) if times else 0.0
    doc = {
        "tool": "h2load", "duration_us": int(counts["seconds"] * 1e6), "requests": ok,
        "bytes": counts["bytes"], "errors": errors, "logged": len(times),
        "latency_us": {"min": times[0] if times else 0, "max": times[-1] if times else 0,
                       "mean": round(mean, 1), "stdev": 0},
        "percentiles_us": {f"{p:g}": percentile(times, p) for p in PERCENTILES},
    }
    print("LTJSON " + json.dumps(doc))


def cmd_grpc_message(args):
    """One length-prefixed, uncompressed gRPC message whose protobuf body is field 1 (bytes)
    holding a fixed payload of BYTES bytes (< 128): what s17 POSTs on every call."""
    size = int(args[0])
    if not 0 < size < 128:
        sys.exit("grpc-message: BYTES must be 1..127 (a one-byte protobuf length)")
    payload = (b"ringgate loadtest, gRPC unary echo " * 4)[:size]
    message = b"\x0a" + bytes([size]) + payload
    sys.stdout.buffer.write(b"\x00" + len(message).to_bytes(4, "big") + message)


COMMANDS = {
    "render": cmd_render,
    "freeport": cmd_freeport,
    "wait-port": cmd_wait_port,
    "snap": cmd_snap,
    "descendants": cmd_descendants,
    "idle": cmd_idle,
    "idle-tls": cmd_idle_tls,
    "check-post": cmd_check_post,
    "json-part": cmd_json_part,
    "check-json": cmd_check_json,
    "h2load-summary": cmd_h2load_summary,
    "grpc-message": cmd_grpc_message,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
