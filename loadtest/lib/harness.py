"""Process harness shared by loadtest/slow.sh and loadtest/soak.sh (standard library only).

Starts a backend nginx (loadtest/nginx/backend.conf.tmpl: /small, /16k, /1m, /post) and
ringgate under a private temp dir, on free loopback ports, and stops everything it started
when the run ends (normally, on failure or on Ctrl-C). Reads a process's RSS and open file
descriptors from /proc.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # loadtest/
REPO = os.path.dirname(HERE)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def load_average():
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def raise_nofile(need):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def render(template, out, values):
    with open(template, encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


class Run:
    """A temp dir and the processes started in it; `with Run(...) as run:` stops them all."""

    def __init__(self, keep=False):
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="ringgate-lt-")
        self.procs = []
        os.makedirs(os.path.join(self.dir, "logs"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.makedirs(os.path.join(self.dir, "data"))

    def __enter__(self):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc):
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def spawn(self, name, argv, **kw):
        out = open(self.path("logs", f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.procs.append((name, proc))
        return proc

    def forget(self, proc):
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def backend(self, port, workers=1, name="backend"):
        """Starts the backend nginx on `port`; returns its Popen (the master)."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        data = self.path("data")
        if not os.path.exists(os.path.join(data, "1m")):
            with open(os.path.join(data, "16k"), "wb") as f:
                f.write(os.urandom(16384))
            with open(os.path.join(data, "1m"), "wb") as f:
                f.write(os.urandom(1 << 20))
        prefix = self.path(name)
        os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
        conf = self.path(f"{name}.conf")
        render(os.path.join(HERE, "nginx", "backend.conf.tmpl"), conf, {
            "USER_LINE": "user root;" if os.geteuid() == 0 else "",
            "WORKERS": workers,
            "PREFIX": prefix,
            "ADDR": f"127.0.0.1:{port}",
            "DATA": data,
        })
        proc = self.spawn(name, [nginx, "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "error.log")])
        wait_port(port, 10, proc)
        return proc

    def ringgate(self, binary, config_text, port, name="ringgate", env=None):
        conf = self.path(f"{name}.toml")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(config_text)
        check = subprocess.run([binary, "--config", conf, "--check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"config refused: {check.stdout}{check.stderr}")
        full_env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), **(env or {}))
        proc = self.spawn(name, [binary, "--config", conf], env=full_env)
        wait_port(port, 20, proc)
        return proc, conf


def find_ringgate(explicit):
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    binary = os.path.join(target, "release", "ringgate")
    if not os.path.exists(binary):
        raise SystemExit(f"no {binary}: run `cargo build --release` or pass --ringgate-bin")
    return binary
