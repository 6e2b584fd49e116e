#!/usr/bin/env python3
"""Turn the raw output of loadtest/compare.sh into the results files.

  report.py rate RAW_DIR SCENARIO FRACTION CONTENDER...
      print FRACTION x the lowest requests/s any CONTENDER reached in SCENARIO (an integer)
  report.py write RAW_DIR OUT_STEM
      write OUT_STEM.md (tables), OUT_STEM.json (parsed numbers) and OUT_STEM.png (plot)

RAW_DIR holds, per scenario S and contender C: S.C.out (wrk's LTJSON line or oha's JSON),
S.C.before.json / S.C.after.json (lt.py snap of C), S.C.others.before.json /
S.C.others.after.json (lt.py snap of the other, idle contenders), S.C.rc; s8.C.out (lt.py
idle); s8tls.C.out (lt.py idle-tls); gzsize.C.json (s15's compressed size); meta.env; notes.txt; log.C.txt.

Any number of contenders (meta.env `contenders=`, in the order measured): the last one is the
subject (ringgate, or its --standin), the first is nginx; every table has a column per
contender and the subject's ratio to each of the others. Only the standard library is
needed, except matplotlib for the PNG.
"""

import json
import math
import os
import re
import sys

# Scenario ids must match compare.sh.
SCENARIOS = {
    "s1": ("Small GET, keep-alive, closed loop",
           "13-byte `GET /small` as fast as possible over {conns} keep-alive connections "
           "(wrk, closed loop). The maximum throughput of one contender core."),
    "s2": ("Small GET at a fixed rate, open loop",
           "The same request at a fixed {rate} req/s (50% of the lowest s1 maximum) over "
           "{conns} connections, sent on schedule whatever the answers do (oha `-q` with "
           "`--latency-correction`: latency counts from when a request was due, so stalls are "
           "not hidden — coordinated omission corrected). The latency a client sees at a "
           "sane load."),
    "s3": ("16 KiB responses",
           "`GET /16k` (a 16 KiB static file on the backend), {conns} keep-alive connections, "
           "closed loop."),
    "s4": ("1 MiB responses",
           "`GET /1m` (a 1 MiB static file on the backend), {conns} keep-alive connections, "
           "closed loop. Tests body streaming (and nginx's proxy buffering; HAProxy "
           "streams through its 16 KiB buffers)."),
    "s5": ("4 KiB POST bodies",
           "`POST /post` with a 4 KiB body over {conns} keep-alive connections; the backend "
           "reads the whole body and answers `ok`."),
    "s6": ("New connection per request",
           "`GET /small` with `Connection: close` over {conns} concurrent connections: every "
           "request pays for accept, the connection's setup and its close."),
    "s7": ("1,000 concurrent keep-alive connections",
           "`GET /small` over 1,000 keep-alive connections, closed loop."),
    "s9": ("HTTPS small GET, keep-alive",
           "s1 over TLS: `GET /small` over {conns} keep-alive HTTPS connections (wrk), TLS 1.3 "
           "with TLS_AES_128_GCM_SHA256 and the same self-signed ECDSA P-256 certificate on "
           "every contender (HAProxy: OpenSSL, `ssl-min-ver TLSv1.3`, `ciphersuites`). "
           "Requests per second once the sessions are up."),
    "s11": ("Composite of 3 calls, closed loop",
            "`GET /compose` over {conns} keep-alive connections (wrk). What each contender "
            "does per request: **ringgate** answers with a composite: 3 concurrent calls to the "
            "backend (`/json/a`, `/json/b`, `/json/c`, 2 KiB JSON each; a and b spliced as they "
            "are after a well-formedness check, c parsed and shaped with an allow list and a "
            "rename) merged into one JSON object with a `Content-Length`. **nginx** and "
            "**haproxy**, which have no composition, proxy the path as ONE call to one 2 KiB "
            "part (`/json/a`; HAProxy: `http-request set-path`). **nginx-ssi** (a second nginx "
            "process, same configuration) makes the SAME 3 backend calls as ringgate: "
            "`GET /compose-ssi` answers a template `{{\"a\":…,\"b\":…,\"c\":…}}` whose three "
            "SSI `include virtual` subrequests proxy `/json/a`, `/json/b`, `/json/c` in "
            "parallel; nginx writes the raw parts in template order, chunked, with no JSON "
            "check and no shaping. The goal: ringgate's CPU per composite < 3x nginx's per "
            "proxied call."),
    "s12": ("Composite at a fixed rate, open loop",
            "s11 at a fixed {compose_rate} req/s (50% of the lowest s11 maximum, nginx-ssi "
            "included), oha with latency correction, each contender doing what s11 says. "
            "ringgate and nginx-ssi put the same 3 calls per request on the backend (which "
            "shares the load-generator core), nginx and HAProxy one: compare ringgate's client "
            "p99 with nginx-ssi's. ringgate is restarted right before its warm-up, warms up on "
            "a twin composite (`/compose-warmup`), and its own exact quantiles are read from "
            "its admin API (`GET /metrics`) after the window. "
            "The goal (issue 12): the gateway adds at most 1 ms to the slowest required "
            "call's p99, i.e. ringgate's client p99 (oha) minus the p99 of the slowest "
            "required call per composite, as the gateway timed it "
            "(`ringgate_composite_slowest_call_quantile_seconds`), is ≤ 1 ms."),
    "s13": ("WebSocket echo",
            "32-byte binary messages over 64 WebSocket connections, each waiting for its echo "
            "before sending the next (loadtest/wsbench.rs, one client thread per connection), "
            "through each contender's tunnel to the same echo server (nginx: the documented "
            "`Upgrade`/`Connection` headers; HAProxy: its built-in upgrade handling, "
            "`timeout tunnel 300s`). requests/s are messages "
            "echoed per second; latency is the round trip. The goal: more messages per "
            "contender CPU-second than nginx, p99 no worse."),
    "s14": ("Cache hits",
            "`GET /cacheable` (13 bytes; the backend says `Cache-Control: max-age=600`) over "
            "{conns} keep-alive connections, closed loop, after the warm-up stored it: every "
            "measured request is a hit. ringgate: its per-worker cache; nginx: `proxy_cache` "
            "with its cache directory on tmpfs and `proxy_cache_valid 200 10m`; HAProxy: its "
            "`cache` section, a RAM cache in shared memory (`total-max-size 64` MiB, objects "
            "above `max-object-size`, 256 KiB here, are not stored; `max-age 600`). The goal: "
            "ringgate's hits at least 1.5x nginx's requests per contender CPU-second, p99 no "
            "worse."),
    "s15": ("gzip of 16 KiB JSON",
            "`GET /gz` with `Accept-Encoding: gzip` over {conns} keep-alive connections, closed "
            "loop: the backend's 16 KiB JSON answer compressed on every request at gzip level 6 "
            "(ringgate: a `compress` policy; nginx: `gzip on`, `gzip_proxied any`, "
            "`gzip_comp_level 6`, same type and minimum length). HAProxy: `compression algo "
            "gzip`, `compression type application/json`, with this build's compressor "
            "({haproxy_compressor}); libslz is a stateless deflate encoder with a single level "
            "that trades compression ratio for speed, so it is not level 6: compare its CPU "
            "together with the compressed sizes below. The goal: ringgate's CPU per request at "
            "most nginx's."),
    "s10": ("HTTPS new connection per request",
            "s6 over TLS: `GET /small` with `Connection: close` over {conns} concurrent HTTPS "
            "connections; every request pays for a full TLS 1.3 handshake (wrk does not "
            "resume sessions), so requests/s is new handshakes per second."),
    "s16": ("HTTP/2 over TLS, small GET, many streams per connection",
            "13-byte `GET /small` with h2load over {h2_clients} HTTP/2 connections with "
            "{h2_streams} concurrent streams each ({h2_inflight} requests in flight), closed "
            "loop, TLS 1.3 with TLS_AES_128_GCM_SHA256 and ALPN h2 on the s9 certificate. Each "
            "contender serves HTTP/2 on a listener of its own (nginx: `listen ... ssl http2`; "
            "HAProxy: `bind ... ssl ... alpn h2,http/1.1`; ringgate: a `[[server.tls]]` "
            "listener with `alpn = [\"h2\", \"http/1.1\"]`) and forwards every stream over "
            "HTTP/1.1 to the same backend pool, with the same forwarding headers. h2load "
            "prints no percentiles: they come from its per-request log (`--log-file`: the time "
            "from a request's start to the end of its response). The goal (issue 15): ringgate "
            "≥ 1.2x nginx's requests per contender CPU-second."),
    "s17": ("gRPC unary over HTTP/2",
            "h2load POSTs one fixed gRPC message (71 bytes: the 5-byte prefix and a protobuf "
            "with a 64-byte field; `content-type: application/grpc`, `te: trailers`) to "
            "`/loadtest.Echo/Unary` on the s16 listeners, same shape ({h2_clients} connections x "
            "{h2_streams} streams, closed loop). The backend is an h2c gRPC echo server "
            "(loadtest/grpcecho.rs, one thread): the message back and `grpc-status: 0` in the "
            "trailers. nginx: `grpc_pass grpc://` to an upstream with `keepalive 1024` (one "
            "stream per upstream connection); HAProxy: `server ... proto h2` (streams "
            "multiplexed on pooled connections); ringgate: a route to a `protocol = \"h2c\"` "
            "group (streams multiplexed, its http2 defaults). h2load counts HTTP statuses "
            "only: before the run, one call per contender with curl must come back with the "
            "echoed message and `grpc-status: 0` (findings under *Notes and logs*). The goal "
            "(issue 15, as for s16): ringgate ≥ 1.2x nginx's requests per contender "
            "CPU-second."),
}
LATENCY_KEYS = ["50", "90", "99", "99.9"]
# Scenarios measured with oha at a fixed rate (the rest: wrk, closed loop).
OPEN_LOOP = ("s2", "s12")
# Log lines worth reporting: ringgate's WARN/ERROR (env_logger), panics, nginx's [warn] and up.
# HAProxy: [WARNING] and [ALERT] (its [NOTICE] start-up lines are not problems).
PROBLEM = re.compile(r"\b(WARN|ERROR)\b|panick|\[(warn|error|crit|alert|emerg)\]"
                     r"|\[(WARNING|ALERT)\]")
TIMESTAMP = re.compile(r"^\[?\d{4}[-/]\d\d[-/]\d\d[T ][\d:.]+Z?\s*")
# s12: ringgate's own figures, from its admin API (names in ringgate.toml.tmpl).
COMPOSITE, COMPOSE_ROUTE = "three", "compose"
METRIC_LINE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
QUANTILE_KEY = {"0.5": "50", "0.9": "90", "0.99": "99", "0.999": "99.9"}


# --------------------------------------------------------------------------- reading

def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_meta(raw):
    meta = {"version": []}
    with open(os.path.join(raw, "meta.env"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            if key == "version":
                meta["version"].append(value)
            else:
                meta[key] = value
    return meta


def parse_wrk(text):
    for line in text.splitlines():
        if line.startswith("LTJSON "):
            d = json.loads(line[len("LTJSON "):])
            secs = d["duration_us"] / 1e6
            errs = d["errors"]
            return {
                "tool": d.get("tool", "wrk"),
                "requests": d["requests"],
                "seconds": secs,
                "rps": d["requests"] / secs if secs else 0.0,
                "bytes_per_s": d["bytes"] / secs if secs else 0.0,
                "errors": sum(errs.values()),
                "error_detail": {k: v for k, v in errs.items() if v},
                "pct_ms": {k: v / 1000.0 for k, v in d["percentiles_us"].items()},
                "max_ms": d["latency_us"]["max"] / 1000.0,
            }
    return None


def parse_oha(text):
    try:
        d = json.loads(text)
    except ValueError:
        return None
    summ = d.get("summary", {})
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    bad_status = sum(v for k, v in codes.items() if not k.startswith("2"))
    # Requests still in flight when the duration ends are cancelled by oha and reported as
    # "aborted due to deadline": an artefact of stopping, not an error of the contender.
    errs = {k: v for k, v in (d.get("errorDistribution") or {}).items()
            if "aborted due to deadline" not in k}
    n_err = sum(errs.values()) + bad_status
    secs = summ.get("total") or 0.0
    pct = {}
    for k, v in (d.get("latencyPercentiles") or {}).items():
        if v is not None:
            pct[k.lstrip("p")] = v * 1000.0
    detail = dict(errs)
    if bad_status:
        detail.update({f"status {k}": v for k, v in codes.items() if not k.startswith("2")})
    return {
        "tool": "oha",
        "requests": ok,
        "seconds": secs,
        "rps": ok / secs if secs else 0.0,
        "bytes_per_s": summ.get("sizePerSec") or 0.0,
        "errors": n_err,
        "error_detail": detail,
        "pct_ms": pct,
        "max_ms": (summ.get("slowest") or 0.0) * 1000.0,
    }


def parse_gateway_metrics(text):
    """s12: the composite's and its slowest required call's exact quantiles (ms), the route's
    request duration quantiles and the composites counted, from ringgate's /metrics."""
    families = {
        "ringgate_composite_duration_quantile_seconds": ("composite", COMPOSITE, "composite_ms"),
        "ringgate_composite_slowest_call_quantile_seconds":
            ("composite", COMPOSITE, "slowest_call_ms"),
        "ringgate_composite_overhead_quantile_seconds": ("composite", COMPOSITE, "overhead_ms"),
        "ringgate_request_duration_quantile_seconds": ("route", COMPOSE_ROUTE, "route_ms"),
    }
    out = {"composite_ms": {}, "slowest_call_ms": {}, "overhead_ms": {}, "route_ms": {},
           "outcomes": {}}
    for line in text.splitlines():
        m = METRIC_LINE.match(line.strip())
        if not m:
            continue
        name, labels, value = m.groups()
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        try:
            v = float(value)
        except ValueError:
            continue
        if name in families:
            key, want, into = families[name]
            q = QUANTILE_KEY.get(lab.get("quantile", ""))
            if lab.get(key) == want and q:
                out[into][q] = v * 1000.0
        elif name == "ringgate_composite_requests_total" and lab.get("composite") == COMPOSITE:
            out["outcomes"][lab.get("outcome", "?")] = int(v)
    return out if out["slowest_call_ms"] or out["composite_ms"] else None


def cpu_busy(before, after, cpus):
    """Busy % of the listed CPUs (averaged) between two snapshots."""
    busy = total = 0
    for c in cpus:
        b, a = before["cpus"].get(c), after["cpus"].get(c)
        if b and a:
            busy += a[0] - b[0]
            total += a[1] - b[1]
    return 100.0 * busy / total if total else None


def load_run(raw, scen, cont, meta):
    base = os.path.join(raw, f"{scen}.{cont}")
    try:
        with open(base + ".out", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    res = parse_oha(text) if scen in OPEN_LOOP else parse_wrk(text)
    if res is None:
        res = {"failed": True, "output": text[-500:]}
    before, after = read_json(base + ".before.json"), read_json(base + ".after.json")
    if before and after:
        wall = after["time"] - before["time"]
        cpu = after["cpu_s"] - before["cpu_s"]
        res["cpu_s"] = cpu
        res["cpu_pct"] = 100.0 * cpu / wall if wall > 0 else None
        if res.get("requests"):
            res["cpu_us_per_req"] = cpu * 1e6 / res["requests"]
            # User and kernel time apart: kernel time is the floor user space cannot beat.
            if "user_s" in after and "user_s" in before:
                res["user_us_per_req"] = (after["user_s"] - before["user_s"]) * 1e6 / res["requests"]
                res["sys_us_per_req"] = (after["sys_s"] - before["sys_s"]) * 1e6 / res["requests"]
        res["rss_kb"] = after["rss_kb"]
        if res.get("requests") and res.get("bytes_per_s") and res.get("rps"):
            res["bytes_per_req"] = res["bytes_per_s"] / res["rps"]
        res["contender_core_busy"] = cpu_busy(before, after, meta["contender_cpus"].split(","))
        res["load_core_busy"] = cpu_busy(
            before, after,
            sorted(set(meta["loadgen_cpus"].split(",")) | set(meta["backend_cpus"].split(","))))
    # The other contenders sit idle on the same core(s) meanwhile: their CPU should be ~0.
    ob, oa = read_json(base + ".others.before.json"), read_json(base + ".others.after.json")
    if ob and oa:
        res["others_cpu_ms"] = (oa["cpu_s"] - ob["cpu_s"]) * 1000.0
    try:
        with open(base + ".metrics", encoding="utf-8", errors="replace") as f:
            res["gateway"] = parse_gateway_metrics(f.read())
    except OSError:
        pass
    probe = read_json(base + ".probe")
    if probe and probe.get("count"):
        res["probe"] = probe
    return res


def all_contenders(meta):
    """Every contender measured in some scenario: the main ones (meta `contenders`) with the
    scenario-specific extras (nginx-ssi in s11/s12) after the first; the subject stays last."""
    main = meta["contenders"].split(",")
    extras = [c for c in meta.get("extra_contenders", "").split(",") if c]
    return [main[0]] + extras + main[1:], extras


def scenario_contenders(conts, extras, rs):
    """The contenders of one scenario: every main one (a missing result shows as such), and
    the extras that ran in it."""
    return [c for c in conts if c not in extras or c in rs]


def load_idle(raw, conts, scen):
    """lt.py idle's JSON per contender (s8: plain, s8tls: TLS), for those that have one."""
    idle = {}
    for c in conts:
        d = read_json(os.path.join(raw, f"{scen}.{c}.out"))
        if d:
            idle[c] = d
    return idle


def load_all(raw):
    meta = read_meta(raw)
    conts, _ = all_contenders(meta)
    runs = {}
    for scen in SCENARIOS:
        for c in conts:
            r = load_run(raw, scen, c, meta)
            if r is not None:
                runs.setdefault(scen, {})[c] = r
    idle = load_idle(raw, conts, "s8")
    gz = {}
    for c in conts:
        d = read_json(os.path.join(raw, f"gzsize.{c}.json"))
        if d:
            gz[c] = d
    notes = []
    try:
        with open(os.path.join(raw, "notes.txt"), encoding="utf-8") as f:
            notes = [ln.rstrip() for ln in f if ln.strip()]
    except OSError:
        pass
    logs = {}
    for c in ["backend", "wsbackend", "grpcbackend"] + conts:
        try:
            with open(os.path.join(raw, f"log.{c}.txt"), encoding="utf-8", errors="replace") as f:
                logs[c] = [ln.rstrip() for ln in f]
        except OSError:
            if c not in ("wsbackend", "grpcbackend"):  # those run only for s13 / s17
                logs[c] = []
    return meta, conts, runs, idle, gz, notes, logs


# --------------------------------------------------------------------------- formatting

def fnum(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fms(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def limit(r, workers):
    """What bounded a closed-loop run: the contender's cores, or the load side's."""
    if not r or r.get("failed") or r.get("cpu_pct") is None:
        return "—"
    if r["cpu_pct"] >= 90.0 * workers:
        return "contender"
    if (r.get("load_core_busy") or 0) >= 95.0:
        return f"load side ({r['cpu_pct']:.0f}% CPU)"
    return f"neither ({r['cpu_pct']:.0f}% CPU)"


def ratio(b, a):
    if a is None or b is None or a == 0:
        return "—"
    return f"{b / a:.2f}×"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def get(r, key):
    return None if not r or r.get("failed") else r.get(key)


def pct(r, p):
    return None if not r or r.get("failed") else r["pct_ms"].get(p)


def ratio_headers(conts):
    """The subject (last contender) over each of the others: `ringgate/nginx`, ..."""
    return [f"{conts[-1]}/{c}" for c in conts[:-1]]


def contender_row(label, vals, fmt, with_ratio=True):
    """A table row: one cell per contender, then the subject's ratio to each other one."""
    cells = [fmt(v) for v in vals]
    ratios = [ratio(vals[-1], v) if with_ratio else "" for v in vals[:-1]]
    return [label] + cells + ratios


def scenario_table(conts, rs):
    """One scenario: a column per contender (rs: contender -> result) and the ratios."""
    rr = [rs.get(c) for c in conts]

    def row(label, key, fmt, with_ratio=True):
        return contender_row(label, [get(r, key) for r in rr], fmt, with_ratio)

    def f2(v):
        return fnum(v, 2)

    rows = [row("requests/s", "rps", fnum)]
    for p in LATENCY_KEYS:
        rows.append(contender_row(f"p{p} latency (ms)", [pct(r, p) for r in rr], fms))
    rows += [
        row("max latency (ms)", "max_ms", fms, False),
        row("errors (non-2xx, socket, timeout)", "errors", fnum, False),
        row("contender CPU, user+sys (s)", "cpu_s", f2),
        row("contender CPU (% of one core)", "cpu_pct", lambda v: fnum(v, 1), False),
        row("contender CPU per request (µs)", "cpu_us_per_req", f2),
        row("… of which user (µs)", "user_us_per_req", f2),
        row("… of which kernel (µs)", "sys_us_per_req", f2),
        contender_row("contender RSS at end (MiB)",
                      [get(r, "rss_kb") and get(r, "rss_kb") / 1024 for r in rr],
                      lambda v: fnum(v, 1)),
        row("bytes per response (as the load tool counts them)", "bytes_per_req", fnum),
    ]
    if any(r and r.get("probe") for r in rr):
        for p in ("50", "99", "99.9"):
            rows.append(contender_row(f"probe p{p}, kernel-timed (ms)",
                                      [probe_ms(r, p) for r in rr], fms))
    rows += [
        row("idle contenders' CPU meanwhile (ms)", "others_cpu_ms", lambda v: fnum(v, 1), False),
        row("load-side cores busy (%)", "load_core_busy", fnum, False),
    ]
    blank = [""] * (len(conts) + len(conts) - 1)
    for name, r in zip(conts, rr):
        if r is not None and r.get("failed"):
            rows.append([f"**{name}: no result**"] + blank)
        elif r is not None and r.get("error_detail"):
            detail = ", ".join(f"{k} {v}" for k, v in r["error_detail"].items())
            rows.append([f"{name} errors", detail] + blank[1:])
    return table([""] + conts + ratio_headers(conts), rows)


def summary_tables(meta, conts, runs):
    """Per scenario and contender: req/s, p99, user/kernel/total CPU µs per request, the
    limit; then the subject's ratios to each other contender."""
    workers = int(meta["workers"])
    _, extras = all_contenders(meta)
    rows, ratio_rows = [], []
    for s, (title, _) in SCENARIOS.items():
        if s not in runs:
            continue
        for i, c in enumerate(scenario_contenders(conts, extras, runs[s])):
            r = runs[s].get(c) or {}
            if r.get("failed"):
                r = {}
            rows.append([f"{s} {title}" if i == 0 else "", c, fnum(r.get("rps")),
                         fms((r.get("pct_ms") or {}).get("99")),
                         fnum(r.get("user_us_per_req"), 1), fnum(r.get("sys_us_per_req"), 1),
                         fnum(r.get("cpu_us_per_req"), 1),
                         "fixed rate" if s in OPEN_LOOP else limit(r, workers)])
        rr = [runs[s].get(c) for c in conts]
        cells = [f"{s} {title}"]
        for vals in ([get(r, "rps") for r in rr], [pct(r, "99") for r in rr],
                     [get(r, "cpu_us_per_req") for r in rr]):
            cells += [ratio(vals[-1], v) for v in vals[:-1]]
        ratio_rows.append(cells)
    if not rows:
        return ""
    out = [table(["scenario", "contender", "req/s", "p99 ms", "user µs/req", "kernel µs/req",
                  "CPU µs/req", "limited by"], rows)]
    refs = conts[:-1]
    out.append("\n*Limited by*: `contender` means the contender used ≥ 90% of its cores, so "
               "requests/s is its maximum; `load side` means the backend + load-generator "
               "cores were ≥ 95% busy while the contender was not, so requests/s is the load "
               "side's maximum and **CPU µs per request is the fair comparison**. User and "
               "kernel µs per request are the contender's own user and system time from "
               "/proc/PID/stat; kernel time is the floor user-space work cannot go below.\n")
    hdr = ["scenario"]
    for what in ("req/s", "p99", "CPU µs/req"):
        hdr += [f"{what} {conts[-1]}/{c}" for c in refs]
    out.append(table(hdr, ratio_rows))
    return "\n".join(out)


def probe_ms(r, p):
    """The latency probe's kernel-timed percentile p (ms), or None (see lib/probe.py)."""
    if not r or r.get("failed") or not r.get("probe"):
        return None
    return r["probe"]["kernel"].get(p)


def s12_probe_added_ms(r):
    """ringgate's kernel-timed probe p99 in s12 minus its slowest required call's p99."""
    probe = probe_ms(r, "99")
    if probe is None or not r.get("gateway"):
        return None
    slowest = r["gateway"]["slowest_call_ms"].get("99")
    return None if slowest is None else probe - slowest


def s12_added_ms(r):
    """ringgate's client p99 in s12 minus its slowest required call's p99 (ms), or None."""
    if not r or r.get("failed") or not r.get("gateway"):
        return None
    client, slowest = r["pct_ms"].get("99"), r["gateway"]["slowest_call_ms"].get("99")
    return None if client is None or slowest is None else client - slowest


def s12_gateway_table(r):
    """s12: client latency against the gateway's own figures, by percentile."""
    g = r.get("gateway") if r and not r.get("failed") else None
    if not g:
        return ("No gateway figures: ringgate's admin API gave no composite quantiles "
                "(`GET /metrics` failed, or this build does not export them).\n")
    keys = LATENCY_KEYS
    client = r["pct_ms"]

    def row(label, d):
        return [label] + [fms(d.get(k)) for k in keys]
    rows = [row("client latency (oha, measured window)", client),
            row("route `compose`, gateway: head read → answer written", g["route_ms"]),
            row("composite, gateway: first call started → answer assembled", g["composite_ms"]),
            row("**slowest required call** per composite, gateway", g["slowest_call_ms"]),
            row("client − slowest required call",
                {k: client[k] - g["slowest_call_ms"][k] for k in keys
                 if k in client and k in g["slowest_call_ms"]}),
            row("probe, kernel-timed: request in the gateway's socket → answer in the "
                "probe's", (r.get("probe") or {}).get("kernel", {})),
            row("**probe − slowest required call**",
                {k: probe_ms(r, k) - g["slowest_call_ms"][k] for k in keys
                 if probe_ms(r, k) is not None and k in g["slowest_call_ms"]}),
            row("**added by the gateway** per composite, gateway: head read → answer "
                "written, less its slowest required call", g.get("overhead_ms", {}))]
    counted = ", ".join(f"{k} {fnum(v)}" for k, v in sorted(g["outcomes"].items()))
    added = s12_added_ms(r)
    verdict = "—" if added is None else (
        f"{added:.2f} ms: {'met' if added <= 1.0 else '**not met**'} (goal ≤ 1 ms)")
    probed = s12_probe_added_ms(r)
    probe_verdict = "—" if probed is None else (
        f"{probed:.2f} ms: {'met' if probed <= 1.0 else '**not met**'} (goal ≤ 1 ms)")
    return ("ringgate's own figures (ms), read from its admin API after the window: exact "
            "quantiles since its restart right before the warm-up, which went to a twin "
            "composite (`/compose-warmup`, the same calls), so they cover the measured window "
            f"only, as oha's do. Composites the gateway counted: {counted or '—'}.\n\n"
            + table([""] + [f"p{k}" for k in keys], rows)
            + f"\n\nAdded by the gateway at p99 (client p99 − slowest required call's p99): "
              f"{verdict}. A difference of percentiles, not a percentile of differences; the "
              "client's figure includes the loopback hops, the load generator's own queueing "
              "on the shared load-side core, and the worker's queueing. "
              f"Per request, as the gateway timed it (p99 of head read → answer written less "
              f"that request's slowest required call): {fms(g.get('overhead_ms', {}).get('99'))} "
              "ms.\n\n"
              f"Added by the gateway at p99, kernel-timed (probe p99 − slowest required call's "
              f"p99): {probe_verdict}. The probe (loadtest/lib/probe.py) sends "
              f"{fnum((r.get('probe') or {}).get('count'))} requests over the window on one "
              "connection beside oha and times each from its send() to the kernel's receive "
              "timestamp of the answer: the gateway's wait before it reads the request, its "
              "work, its calls and its answer's write, without the load generator's own "
              "scheduling on the shared core.\n")


def targets(conts, runs, idle, meta):
    """The goals of issue 3 (against nginx) and issue 17 (against nginx and HAProxy), checked
    against this run (only meaningful for real ringgate)."""
    a, b = conts[0], conts[-1]
    _, extras = all_contenders(meta)
    main_refs = [c for c in conts[:-1] if c not in extras]

    def val(s, c, key, p=None):
        r = runs.get(s, {}).get(c)
        if not r or r.get("failed"):
            return None
        return r["pct_ms"].get(p) if p else r.get(key)

    def check(lines, label, bv, av, want, better_high, unit="×"):
        """bv/av (or bv alone when av is 1 and unit is not ×) against want."""
        if bv is None or av is None or av == 0:
            lines.append(f"| {label} | — | — | not measured |")
            return
        q = bv / av
        ok = q >= want if better_high else q <= want
        shown = f"{q:.2f}{unit}" if unit == "×" else f"{q:.2f} {unit}"
        want_s = f"{want}{unit}" if unit == "×" else f"{want} {unit}"
        lines.append(f"| {label} | {shown} | {'≥' if better_high else '≤'} {want_s} | "
                     f"{'met' if ok else '**not met**'} |")

    l3 = []
    check(l3, "s1 small GET keep-alive throughput", val("s1", b, "rps"), val("s1", a, "rps"),
          1.5, True)
    # Requests per CPU-second: the same goal when the load side, not the contender, was the
    # limit (CPU µs per request of nginx over ringgate's).
    ca, cb = val("s1", a, "cpu_us_per_req"), val("s1", b, "cpu_us_per_req")
    check(l3, "s1 small GET requests per contender CPU-second", ca, cb, 1.5, True)
    check(l3, "s2 p99 latency at the fixed rate", val("s2", b, None, "99"),
          val("s2", a, None, "99"), 1.0, False)
    check(l3, "s4 1 MiB throughput", val("s4", b, "rps"), val("s4", a, "rps"), 1.0, True)
    # Composition (s11/s12): CPU of one composite (3 calls) against 3 of nginx's proxied
    # calls, and the composite's p99 against nginx's single call's p99 + 1 ms.
    ca, cb = val("s11", a, "cpu_us_per_req"), val("s11", b, "cpu_us_per_req")
    check(l3, "s11 composite CPU vs 3 nginx proxied calls", cb, 3 * ca if ca else None, 1.0,
          False)
    # s12: what the gateway adds to the slowest required call's p99 (client p99 from oha,
    # the slowest call's p99 from ringgate's own exact quantiles).
    added = s12_added_ms(runs.get("s12", {}).get(b))
    check(l3, "s12 p99 added by the gateway: client p99 − slowest required call's p99", added,
          1.0, 1.0, False, "ms")
    probed = s12_probe_added_ms(runs.get("s12", {}).get(b))
    check(l3, "s12 p99 added by the gateway, kernel-timed: probe p99 − slowest required "
          "call's p99", probed, 1.0, 1.0, False, "ms")
    ca, cb = val("s13", a, "cpu_us_per_req"), val("s13", b, "cpu_us_per_req")
    check(l3, "s13 WebSocket messages per contender CPU-second", ca, cb, 1.0, True)
    check(l3, "s13 WebSocket p99 round trip", val("s13", b, None, "99"),
          val("s13", a, None, "99"), 1.0, False)
    ca, cb = val("s14", a, "cpu_us_per_req"), val("s14", b, "cpu_us_per_req")
    check(l3, "s14 cache hits per contender CPU-second", ca, cb, 1.5, True)
    check(l3, "s14 cache hit p99", val("s14", b, None, "99"), val("s14", a, None, "99"), 1.0,
          False)
    check(l3, "s15 gzip-6 CPU per request", val("s15", b, "cpu_us_per_req"),
          val("s15", a, "cpu_us_per_req"), 1.0, False)
    pa = idle.get(a, {}).get("per_conn_bytes")
    pb = idle.get(b, {}).get("per_conn_bytes")
    check(l3, "s8 RSS per idle keep-alive connection", pb, pa, 1.0, False)

    l17 = []
    cb = val("s1", b, "cpu_us_per_req")
    for c in main_refs:
        check(l17, f"s1 requests per contender CPU-second vs {c}", val("s1", c, "cpu_us_per_req"),
              cb, 1.4, True)
    check(l17, f"s1 {b} user CPU per request (path to the goal above)",
          val("s1", b, "user_us_per_req"), 1.0, 2.5, False, "µs")
    for s in ("s1", "s2", "s7"):
        for p in ("99", "99.9"):
            check(l17, f"{s} p{p} latency vs {a}", val(s, b, None, p), val(s, a, None, p), 1.0,
                  False)
    l15 = []
    for s, what in (("s16", "HTTP/2 small GET"), ("s17", "gRPC unary")):
        check(l15, f"{s} {what}: requests per contender CPU-second vs {a}",
              val(s, a, "cpu_us_per_req"), val(s, b, "cpu_us_per_req"), 1.2, True)
    return "\n".join([
        "### Goals from issue 3\n",
        table([f"goal ({b}/{a})", "measured", "target", ""], []) + "\n" + "\n".join(l3) + "\n",
        "### Goals from issue 17\n",
        "Checked on this one run; the issue asks for the median of 3 full runs.\n",
        table([f"goal ({b} against the others)", "measured", "target", ""], []) + "\n"
        + "\n".join(l17) + "\n",
        "### Goals from issue 15\n",
        table([f"goal ({b}/{a})", "measured", "target", ""], []) + "\n" + "\n".join(l15) + "\n",
    ])


# --------------------------------------------------------------------------- plot

def plot(meta, conts, runs, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    except ImportError:
        return False
    scens = [s for s in SCENARIOS if s in runs]
    if not scens:
        return False
    cols = 2
    rows = math.ceil(len(scens) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    palette = [dict(color="#2f6db5", marker="o"), dict(color="#2b8a3e", marker="^"),
               dict(color="#7048e8", marker="D")]
    styles = {c: palette[i % len(palette)] for i, c in enumerate(conts[:-1])}
    styles[conts[-1]] = dict(color="#d9480f", marker="s")   # the subject: ringgate
    ticks = [50, 90, 99, 99.9, 99.99]
    for ax, s in zip(axes.flat, scens):
        for c in conts:
            r = runs[s].get(c)
            if not r or r.get("failed") or not r["pct_ms"]:
                continue
            pts = sorted((float(p), v) for p, v in r["pct_ms"].items() if float(p) < 100)
            xs = [1.0 / (1.0 - p / 100.0) for p, _ in pts]
            ys = [max(v, 1e-3) for _, v in pts]
            ax.plot(xs, ys, label=f"{c} ({r['rps']:,.0f} req/s)", markersize=3,
                    linewidth=1.5, **styles.get(c, {}))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks])
        ax.set_xticklabels([f"p{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("latency (ms)")
        title = SCENARIOS[s][0]
        if s == "s2" and meta.get("rate"):
            title += f" ({int(float(meta['rate'])):,} req/s)"
        if s == "s12" and meta.get("compose_rate"):
            title += f" ({int(float(meta['compose_rate'])):,} req/s)"
        ax.set_title(f"{s}: {title}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[len(scens):]:
        ax.axis("off")
    fig.suptitle(f"Latency by percentile — {' vs '.join(conts)} — {meta['host']}, "
                 f"{meta['date']}, {meta['workers']} worker(s)", fontsize=11)
    # Leave half an inch at the top for the figure title (tight_layout ignores it).
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- markdown

def contender_lines(meta, conts, logs):
    """One line per contender: how it was configured."""
    b, w = conts[-1], meta["workers"]
    lines = []
    for c in conts[:-1]:
        if c == "nginx":
            lines.append(
                f"- nginx: `worker_processes {w}`, upstream `keepalive 1024`, "
                "`proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, `access_log off`, "
                "`worker_connections 16384`, `keepalive_requests 10000000`, `reuseport`, "
                f"`proxy_buffering {meta['buffering']}`, and the forwarding headers ringgate adds "
                "(Host, X-Forwarded-For/-Proto/-Host, Via; Via on responses too).")
        elif c == "haproxy":
            lines.append(
                f"- haproxy: `nbthread {w}` (one process, run with `-db`), `http-reuse always`, "
                "`option http-keep-alive`, server `pool-max-conn 1024 pool-purge-delay 60s`, no "
                f"logging, `maxconn {meta.get('haproxy_maxconn', '?')}`, the same timeouts "
                "(connect 1 s, server 10 s, client keep-alive 300 s), `option forwardfor` and "
                "`http-request set-header` for X-Forwarded-Proto/-Host and Via, Via on responses "
                "(loadtest/haproxy/proxy.cfg.tmpl). Its RSS includes the shared memory of its "
                "64 MiB s14 cache, touched at start (about 45 MiB); s8's per-connection figure "
                "is a delta and does not include it.")
        elif c == "nginx-ssi":
            lines.append(
                "- nginx-ssi (s11/s12 only): a second nginx process with nginx's configuration, "
                "measured on `/compose-ssi`: `ssi on` over a `return 200` template whose three "
                "`include virtual` subrequests go to an `internal` location proxying the "
                "backend's `/json/a`, `/json/b`, `/json/c` (same upstream pool and headers).")
    driver = ""
    for ln in logs.get(b, []):
        m = re.search(r"running with the (\S+) driver", ln)
        if m:
            driver = f" (it ran the {m.group(1)} driver)"
            break
    lines.append(f"- {b}: " + ("the same configuration as nginx (self-test)."
                               if meta.get("standin") == "1"
                               else f"`workers = {w}`, `driver = \"auto\"`{driver}, one route to "
                                    "the same upstream, pool `max_idle_per_target = 1024`, client "
                                    "keep-alive idle 300 s, same timeouts."))
    return lines


def idle_table(meta, conts, idle):
    """s8: RSS with idle keep-alive connections, a column per contender."""
    def g(c, k):
        return (idle.get(c) or {}).get(k)

    def mib(v):
        return None if v is None else v / 1024

    def row(label, key, fmt, with_ratio=True, conv=lambda v: v):
        return contender_row(label, [conv(g(c, key)) for c in conts], fmt, with_ratio)

    def f1(v):
        return fnum(v, 1)

    rows = [
        row("connections opened", "opened", fnum, False),
        contender_row("failed to open", [sum((g(c, "errors") or {}).values()) for c in conts],
                      fnum, False),
        row("closed by the server while idle", "closed_by_server", fnum, False),
        row("RSS before (MiB)", "rss_before_kb", f1, True, mib),
        row("RSS with the idle connections (MiB)", "rss_idle_kb", f1, True, mib),
        row("RSS after closing them (MiB)", "rss_after_close_kb", f1, False, mib),
        row("RSS delta (MiB)", "delta_kb", f1, True, mib),
        row("**RSS per connection (bytes)**", "per_conn_bytes", fnum),
        row("RSS per connection 6 s after (bytes)", "per_conn_bytes_late", fnum),
    ]
    blank = [""] * (2 * len(conts) - 2)
    for c in conts:
        if g(c, "errors"):
            rows.append([f"{c} open errors",
                         ", ".join(f"{k} {v}" for k, v in g(c, "errors").items())] + blank)
    return table([""] + conts + ratio_headers(conts), rows)


def write(raw, stem):
    meta, conts, runs, idle, gz, notes, logs = load_all(raw)
    idle_tls = load_idle(raw, conts, "s8tls")
    _, extras = all_contenders(meta)
    main = [c for c in conts if c not in extras]
    a, b, refs = conts[0], conts[-1], main[:-1]
    name = os.path.basename(stem)
    has_png = plot(meta, conts, runs, stem + ".png")
    fmt = {"conns": meta["connections"], "rate": fnum(float(meta.get("rate", "0") or 0)),
           "compose_rate": fnum(float(meta.get("compose_rate", "0") or 0)),
           "haproxy_compressor": meta.get("haproxy_compressor", "?"),
           "h2_clients": meta.get("h2_clients", "?"), "h2_streams": meta.get("h2_streams", "?"),
           "h2_inflight": fnum(int(meta.get("h2_clients", "0") or 0)
                               * int(meta.get("h2_streams", "0") or 0))}
    md = []
    md.append(f"# {b} vs {', '.join(refs)} — {meta['date']}, {meta['host']}\n")
    if meta.get("standin") == "1":
        md.append(f"> **Harness self-test.** `{b}` is a second nginx proxy with the same "
                  f"configuration as `{a}`, not ringgate: its ratios to `{a}` show the harness's "
                  "own noise (ideally 1.00×), nothing about ringgate.\n")
    if meta.get("quick") == "1":
        md.append(f"> **Smoke run** (`--quick`): {meta['duration']} s per measurement. Too short "
                  "for conclusions; use a full run for numbers.\n")

    busy = int(meta.get("busy_before", "0") or 0)
    if busy >= 10:
        md.append(f"> **Noisy machine**: its cores were {busy}% busy with other work in the second "
                  f"before the run (load average {meta.get('loadavg', '?')}). That work competes "
                  "with the contenders and with the load generator; treat the numbers as rough.\n")

    md.append("## Summary\n")
    summary = summary_tables(meta, conts, runs)
    if summary:
        md.append(summary)
    if idle:
        per = ", ".join(f"{c} {fnum((idle.get(c) or {}).get('per_conn_bytes'))} B" for c in main)
        rat = ", ".join(f"{b}/{c} {ratio((idle.get(b) or {}).get('per_conn_bytes'), (idle.get(c) or {}).get('per_conn_bytes'))}"
                        for c in refs)
        md.append(f"\nRSS per idle keep-alive connection (s8): {per}; {rat}.")
    if idle_tls:
        per = ", ".join(f"{c} {fnum((idle_tls.get(c) or {}).get('per_conn_bytes'))} B" for c in main)
        md.append(f"RSS per idle TLS keep-alive connection (s8): {per}.")
    md.append(f"\nRatios are {b}/other: above 1 is better for requests/s, below 1 is better "
              "for latency, CPU and memory.\n")
    if meta.get("standin") != "1":
        md.append(targets(conts, runs, idle, meta))
    if has_png:
        md.append(f"![latency percentiles]({name}.png)\n")

    md.append("## Machine, command and layout\n")
    md.append(f"- Date: {meta['date']}")
    md.append(f"- Machine: `{meta['host']}`, {meta['cores']} cores, {meta['cpu_model']}, "
              f"kernel `{meta['kernel']}`")
    md.append(f"- Command: `{meta['command']}`")
    md.append(f"- Machine load before the run: {meta.get('busy_before', '?')}% of all cores busy, "
              f"load average {meta.get('loadavg', '?')}")
    md.append(f"- Versions: {'; '.join(meta['version'])}")
    md.append(f"- Layout (taskset): contenders on CPU {meta['contender_cpus']} with "
              f"{meta['workers']} worker(s) each; backend (nginx, {meta['backend_workers']} "
              f"worker(s)) on CPU {meta['backend_cpus']}; load generator ({meta['load_threads']} "
              f"thread(s)) on CPU {meta['loadgen_cpus']}. All traffic on 127.0.0.1.")
    md.append(f"- All {len(conts)} contenders run at the same time on the same core(s) and are "
              f"measured one after the other ({', '.join(conts)}) in every scenario they take "
              f"part in ({', '.join(extras) or 'none'} only in s11/s12); the idle "
              "ones use no CPU (each scenario table shows their CPU during the window). Each "
              f"measurement: {meta['warmup']} s warm-up (discarded), then {meta['duration']} s "
              "measured.")
    md += contender_lines(meta, conts, logs)
    md.append("- Backend: a separate nginx (`return 200 \"hello world!\\n\"` for /small, static "
              "16 KiB and 1 MiB files, a POST sink that reads the body), shared by all.")
    md.append("- CPU: user and system seconds of the contender's processes (nginx: master + "
              "workers; HAProxy: its one process, all threads) from /proc/PID/stat, before and "
              "after the measured window. RSS: VmRSS summed the same way, at the end of the "
              "window. Load-side busy %: /proc/stat of the backend and load-generator cores; "
              "near 100% means the load side, not the contender, was the limit, and CPU per "
              "request is then the fairer comparison.\n")

    md.append("## Scenarios\n")
    for s, (title, desc) in SCENARIOS.items():
        if s not in runs:
            continue
        md.append(f"### {s}: {title}\n")
        md.append(desc.format(**fmt) + "\n")
        md.append(scenario_table(scenario_contenders(conts, extras, runs[s]), runs[s]) + "\n")
        if s == "s12" and meta.get("standin") != "1":
            md.append(s12_gateway_table(runs[s].get(b)))
        if s == "s15" and gz:
            sizes = ", ".join(
                f"{c} {fnum(gz[c].get('compressed_bytes'))} B" for c in conts if c in gz)
            ident = next((d.get("identity_bytes") for d in gz.values()), None)
            md.append(f"Compressed body of one answer (curl, before the run): {sizes}, of "
                      f"{fnum(ident)} B uncompressed.\n")

    if idle:
        md.append("### s8: RSS with idle keep-alive connections\n")
        md.append(f"Each contender is restarted (a fresh process, so the load scenarios' heap "
                  f"does not hide the cost), then {meta['idle_conns']} connections are opened to "
                  "it, one `GET /small` answered on each, and left idle; RSS (VmRSS, nginx master "
                  "+ workers) is measured before opening, 2 s after the last one opened (the "
                  "figure compared) and 6 s after. "
                  "Kernel socket buffers are not in RSS and are the same for all.\n")
        md.append(idle_table(meta, main, idle) + "\n")
    if idle_tls:
        md.append("The same with TLS keep-alive connections (the s9 certificate and suite; each "
                  "contender restarted again first):\n")
        md.append(idle_table(meta, main, idle_tls) + "\n")

    md.append("## Notes and logs\n")
    if notes:
        md.append("Findings during the run:\n")
        md += [f"- {n}" for n in notes]
        md.append("")
    else:
        md.append("No contender died, every sanity check passed (exact bodies for /small, /16k, "
                  "/1m over HTTP and /small over HTTPS and over HTTP/2; a pipelined 4 KiB POST + "
                  "GET; and, for the scenarios run, a cache hit on the second GET /cacheable, gzip "
                  "that inflates to the exact JSON, the /compose JSON, a gRPC call echoed with "
                  "grpc-status 0), and every load generator "
                  "exited cleanly.\n")
    for c, lines in logs.items():
        bad = [ln for ln in lines if PROBLEM.search(ln)]
        if bad:
            uniq = list(dict.fromkeys(TIMESTAMP.sub("", ln) for ln in bad))
            md.append(f"Warnings and errors in the log of `{c}` ({len(bad)} lines; the first "
                      "distinct ones):\n")
            md.append("```\n" + "\n".join(u[:200] for u in uniq[:15]) + "\n```\n")
        else:
            md.append(f"Log of `{c}`: no warnings or errors ({len(lines)} lines).\n")

    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(md).rstrip() + "\n")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "runs": runs, "idle": idle, "idle_tls": idle_tls, "gzip_sizes": gz, "notes": notes},
                  f, indent=1, sort_keys=True)


def rate(raw, scen, fraction, conts):
    meta = read_meta(raw)
    vals = []
    for c in conts:
        r = load_run(raw, scen, c, meta)
        if r and not r.get("failed") and r.get("rps"):
            vals.append(r["rps"])
    if not vals:
        sys.exit(f"no {scen} throughput to derive a rate from")
    print(max(1, int(min(vals) * float(fraction))))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "rate":
        rate(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif len(sys.argv) == 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
