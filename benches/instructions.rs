//! Instruction counts of the gateway's per-request work, the regression guard of the plain
//! proxy path (docs/performance.md, "Instruction-count guard"). Run it through
//! `benches/instructions.sh`, which runs this binary under `valgrind --tool=callgrind`,
//! counting only inside `ClientConn::serve_one` (`--toggle-collect`), and compares the
//! counts per request with `benches/instructions.baseline`.
//!
//! Each case starts a gateway in-process (one worker, the legacy epoll driver: valgrind does
//! not know io_uring) in front of the allocation-free fixed backend, warms one keep-alive
//! connection up, zeroes callgrind's counters, sends the measured requests and dumps the
//! counters under the name `instructions:CASE:REQUESTS`. Outside valgrind (`cargo bench`)
//! the same exchanges run once as a smoke test and nothing is counted.
//!
//! Usage: `instructions [--requests N] [--warmup N] [CASE ...]` (default: every case).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

#[path = "../tests/fixed_backend/mod.rs"]
mod fixed_backend;

/// Measured requests per case when not told otherwise.
const DEFAULT_REQUESTS: u64 = 2000;
/// Requests before the measured ones (pool connection, caches, rate-limit table, cache fill).
const DEFAULT_WARMUP: u64 = 200;

/// A plain small GET, as `benches/proxy_path.rs` sends.
const PLAIN_REQUEST: &[u8] =
    b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: instructions\r\nAccept: */*\r\n\r\n";

/// The same GET with the API key the `policies` case checks.
const KEYED_REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: instructions\r\nAccept: */*\r\nX-Api-Key: alice-key-0123456789\r\n\r\n";

/// A typical policy set: an IP filter, an API key, a rate limit per consumer (high enough
/// never to refuse) and request headers set from the consumer and the request id.
const POLICIES: &str = r#"
[policies.ip]
kind = "ip_filter"
allow = ["127.0.0.0/8"]
[policies.key]
kind = "api_key"
[policies.limit]
kind = "rate_limit"
key = "consumer"
rate = "1000000/s"
[policies.shape]
kind = "transform"
[policies.shape.request]
remove_headers = ["X-Debug"]
set_headers = { "X-Consumer-Name" = "{consumer}", "X-Correlation-Id" = "{request_id}" }
[[consumers]]
name = "alice"
api_keys = ["alice-key-0123456789"]
"#;

/// A cache that stores the fixed backend's answer (it states no freshness).
const CACHE: &str = "[caches.c]\nmax_bytes = \"1MiB\"\ndefault_ttl = \"1h\"\n";

/// One measured configuration.
struct Case {
    /// The name the counts are dumped and reported under.
    name: &'static str,
    /// The keys of route `all`.
    route: &'static str,
    /// Tables appended to the config (policies, consumers, caches).
    tables: &'static str,
    /// The request sent each time.
    request: &'static [u8],
    /// Whether every measured request must be answered without the backend.
    from_cache: bool,
    /// The status a request without the API key must get (`policies`: proof that the chain
    /// runs), or `None` when the route checks nothing.
    keyless_status: Option<&'static [u8]>,
}

const CASES: [Case; 3] = [
    Case {
        name: "plain",
        route: "upstream = \"b\"",
        tables: "",
        request: PLAIN_REQUEST,
        from_cache: false,
        keyless_status: None,
    },
    Case {
        name: "policies",
        route: "upstream = \"b\"\npolicies = [\"ip\", \"key\", \"limit\", \"shape\"]",
        tables: POLICIES,
        request: KEYED_REQUEST,
        from_cache: false,
        keyless_status: Some(b"HTTP/1.1 401 "),
    },
    Case {
        name: "cache_hit",
        route: "upstream = \"b\"\ncache = \"c\"",
        tables: CACHE,
        request: PLAIN_REQUEST,
        from_cache: true,
        keyless_status: None,
    },
];

/// What the command line asked for.
struct Options {
    /// Measured requests per case.
    requests: u64,
    /// Requests before the measured ones.
    warmup: u64,
    /// The cases to run (every case when empty).
    cases: Vec<String>,
    /// Started by `cargo bench` (`--bench`): other benches' options are ignored and the
    /// positional arguments are name filters, as criterion's are.
    cargo_bench: bool,
}

fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("instructions: {e}");
            eprintln!("usage: instructions [--requests N] [--warmup N] [CASE ...]");
            std::process::exit(2);
        }
    };
    let counting = callgrind::running_on_valgrind();
    if !counting {
        println!(
            "instructions: not under valgrind, so nothing is counted; each case runs once \
             as a smoke test (counts: benches/instructions.sh)"
        );
    }
    let backend = fixed_backend::start();
    for case in CASES.iter().filter(|c| options.selects(c.name)) {
        let (warmup, requests) = if counting {
            (options.warmup, options.requests)
        } else {
            (2, 10)
        };
        run_case(case, backend, warmup, requests, counting);
        println!("instructions: {} done ({requests} requests)", case.name);
    }
}

impl Options {
    /// Whether case `name` is to run.
    fn selects(&self, name: &str) -> bool {
        if self.cases.is_empty() {
            return true;
        }
        if self.cargo_bench {
            self.cases.iter().any(|c| name.contains(c.as_str()))
        } else {
            self.cases.iter().any(|c| c == name)
        }
    }
}

/// Reads the options. Under `cargo bench` (`--bench` among them) the arguments are meant for
/// every bench, so unknown ones are skipped and the others filter cases by name.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let args: Vec<String> = args.collect();
    let mut options = Options {
        requests: DEFAULT_REQUESTS,
        warmup: DEFAULT_WARMUP,
        cases: Vec::new(),
        cargo_bench: args.iter().any(|a| a == "--bench"),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            other if options.cargo_bench => {
                if !other.starts_with('-') {
                    options.cases.push(arg);
                }
            }
            "--requests" | "--warmup" => {
                let value = args.next().ok_or(format!("{arg} needs a number"))?;
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("{arg}: `{value}` is not a number"))?;
                if arg == "--requests" {
                    options.requests = n.max(1);
                } else {
                    options.warmup = n;
                }
            }
            name if CASES.iter().any(|c| c.name == name) => options.cases.push(arg),
            other => {
                let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
                return Err(format!(
                    "unknown argument `{other}` (cases: {})",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(options)
}

/// Starts a gateway for `case`, warms it up, and counts `requests` exchanges.
fn run_case(case: &Case, backend: SocketAddr, warmup: u64, requests: u64, counting: bool) {
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
driver = "legacy"
[[upstreams]]
name = "b"
targets = [ {{ addr = "{backend}" }} ]
[[routes]]
name = "all"
{route}
{tables}
"#,
        route = case.route,
        tables = case.tables,
    );
    let snapshot = ringgate::config::load_str(&config, "instructions").expect("config");
    let server = ringgate::server::Server::start(Arc::new(snapshot)).expect("start");
    let gateway = server.local_addrs()[0];
    if let Some(status) = case.keyless_status {
        let head = first_head(gateway, PLAIN_REQUEST);
        assert!(
            head.starts_with(status),
            "{}: a request without the key got {}",
            case.name,
            String::from_utf8_lossy(&head)
        );
    }
    let mut client = TcpStream::connect(gateway).expect("connect gateway");
    client.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 8192];
    for _ in 0..warmup.max(1) {
        fixed_backend::exchange(&mut client, case.request, &mut buf);
    }
    let served = fixed_backend::served();
    if counting {
        callgrind::zero_stats();
    }
    for _ in 0..requests {
        fixed_backend::exchange(&mut client, case.request, &mut buf);
    }
    if counting {
        callgrind::dump_stats_at(&format!("instructions:{}:{requests}", case.name));
    }
    let upstream = fixed_backend::served() - served;
    let expected = if case.from_cache { 0 } else { requests };
    assert_eq!(
        upstream, expected,
        "{}: the backend answered {upstream} of {requests} measured requests",
        case.name
    );
    drop(client);
    server.shutdown().expect("shutdown");
}

/// Sends `request` on a new connection and answers the response head (or what came before
/// the connection closed).
fn first_head(gateway: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(gateway).expect("connect gateway");
    stream.write_all(request).expect("write request");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Valgrind client requests (valgrind.h and callgrind.h): a marker instruction sequence that
/// does nothing on the CPU and that valgrind's core recognises and answers.
mod callgrind {
    use std::ffi::CString;

    /// `VG_USERREQ__RUNNING_ON_VALGRIND`.
    const RUNNING_ON_VALGRIND: u64 = 0x1001;
    /// Callgrind's first request code, `VG_USERREQ_TOOL_BASE('C', 'T')`.
    const TOOL_BASE: u64 = (b'C' as u64) << 24 | (b'T' as u64) << 16;
    /// `VG_USERREQ__ZERO_STATS`.
    const ZERO_STATS: u64 = TOOL_BASE + 1;
    /// `VG_USERREQ__DUMP_STATS_AT`.
    const DUMP_STATS_AT: u64 = TOOL_BASE + 3;

    /// Whether the process runs under valgrind.
    pub fn running_on_valgrind() -> bool {
        request(0, RUNNING_ON_VALGRIND, 0) != 0
    }

    /// Zeroes the counters of every thread (callgrind; a no-op under other tools).
    pub fn zero_stats() {
        request(0, ZERO_STATS, 0);
    }

    /// Dumps the counters since the last zero or dump into a file described as `reason`, and
    /// zeroes them.
    pub fn dump_stats_at(reason: &str) {
        let reason = CString::new(reason).expect("no NUL in a dump reason");
        request(0, DUMP_STATS_AT, reason.as_ptr() as u64);
    }

    /// Sends client request `code` with `arg` (the other four arguments zero); answers
    /// `default` when not under valgrind.
    #[cfg(target_arch = "x86_64")]
    fn request(default: u64, code: u64, arg: u64) -> u64 {
        let block: [u64; 6] = [code, arg, 0, 0, 0, 0];
        let mut answer = default;
        // SAFETY: on the CPU the four rotations turn rdi by 128 bits (it keeps its value) and
        // `xchg rbx, rbx` changes nothing, so only the flags change (not preserved, as asm!
        // assumes). Under valgrind the core reads the six words at rax (`block`, alive and
        // initialised for the whole statement) and writes its answer to rdx. The arguments
        // that are pointers (the dump reason) point to live NUL-terminated strings.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") block.as_ptr(),
                inout("rdx") answer,
                inout("rdi") 0u64 => _,
            );
        }
        answer
    }

    /// Other architectures: never under valgrind as far as this bench can tell.
    #[cfg(not(target_arch = "x86_64"))]
    fn request(default: u64, _code: u64, _arg: u64) -> u64 {
        default
    }
}
