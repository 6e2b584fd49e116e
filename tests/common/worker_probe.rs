//! Tells a gateway's workers apart from outside, for tests of per-worker state (each worker
//! has its own response cache, and `SO_REUSEPORT` decides which worker accepts a connection).
//!
//! The probe adds a route with its own cache in front of its own backend (so the test's
//! backend counts nothing of it). The first connection found on a not yet marked worker
//! stores the marker `/__worker/i` there, `i` counting the workers marked so far; a
//! connection's worker is then the `i` whose marker it finds with `only-if-cached`, which
//! never goes upstream and stores nothing. Connections are opened until every worker has
//! the sessions asked for (bounded: a gateway that never spreads connections fails the test).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::client::Session;
use super::gateway::GatewayConfig;
use super::upstream::{Behavior, Handled, Upstream};

/// The `Host` every probe (and every session it hands out) sends.
pub const HOST: &str = "h.example";

/// The path prefix of the markers (`/__worker/0`, `/__worker/1`, ...).
pub const PREFIX: &str = "/__worker/";

/// How many connections a probe opens per session asked for before it gives up.
const ATTEMPTS_PER_SESSION: usize = 200;

/// The marker backend and, per gateway address, how many workers carry a marker.
pub struct WorkerProbe {
    upstream: Upstream,
    marked: RefCell<HashMap<SocketAddr, usize>>,
}

impl WorkerProbe {
    /// Starts the marker backend (every answer fresh for an hour).
    pub fn start() -> WorkerProbe {
        let upstream = Upstream::start(
            "probe",
            Behavior::Handler(Arc::new(|r| Handled::Respond {
                delay: Duration::ZERO,
                status: 200,
                headers: vec![("cache-control".into(), "max-age=3600".into())],
                body: format!("marker {}", r.target).into_bytes(),
            })),
        );
        WorkerProbe {
            upstream,
            marked: RefCell::new(HashMap::new()),
        }
    }

    /// Adds the marker's upstream group, route and cache to `config`.
    pub fn configure(&self, config: GatewayConfig) -> GatewayConfig {
        config
            .upstream("probe", &[self.upstream.addr()])
            .routes(&Self::route_and_cache())
    }

    /// The marker's upstream group, route and cache as TOML tables, for a config file.
    pub fn toml(&self) -> String {
        format!(
            "[[upstreams]]\nname = \"probe\"\ntargets = [ {{ addr = \"{}\" }} ]\n\n{}",
            self.upstream.addr(),
            Self::route_and_cache()
        )
    }

    fn route_and_cache() -> String {
        format!(
            "[[routes]]\nname = \"probe\"\nmatch = {{ path_prefix = \"{PREFIX}\" }}\n\
             upstream = \"probe\"\ncache = \"probe\"\n\n[caches.probe]\nmax_bytes = \"64KiB\"\n"
        )
    }

    /// One session on each of the gateway's `workers` workers: session `i` on worker `i`.
    pub fn sessions(&self, addr: SocketAddr, workers: usize) -> Vec<Session> {
        self.sessions_per_worker(addr, workers, 1)
            .into_iter()
            .flatten()
            .collect()
    }

    /// `per_worker` sessions on each of the gateway's `workers` workers: every session of
    /// `result[i]` is on worker `i`.
    pub fn sessions_per_worker(
        &self,
        addr: SocketAddr,
        workers: usize,
        per_worker: usize,
    ) -> Vec<Vec<Session>> {
        let mut found: Vec<Vec<Session>> = (0..workers).map(|_| Vec::new()).collect();
        let wanted = workers * per_worker;
        let attempts = wanted * ATTEMPTS_PER_SESSION;
        for _ in 0..attempts {
            if found.iter().all(|s| s.len() == per_worker) {
                return found;
            }
            let mut session = Session::connect(addr, HOST);
            let worker = self.worker_of(&mut session, addr, workers);
            if found[worker].len() < per_worker {
                found[worker].push(session);
            }
        }
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert!(
            found.iter().all(|s| s.len() == per_worker),
            "{workers} worker(s): after {attempts} connections the sessions per worker are \
             {counts:?}, wanted {per_worker} each"
        );
        found
    }

    /// Which worker serves `session`'s connection; marks its worker if it carries no marker.
    pub fn worker_of(&self, session: &mut Session, addr: SocketAddr, workers: usize) -> usize {
        let marked = self.marked.borrow().get(&addr).copied().unwrap_or(0);
        for i in 0..marked {
            let probe = session.request(
                "GET",
                &format!("{PREFIX}{i}"),
                "Cache-Control: only-if-cached\r\n",
            );
            match probe.status {
                200 => return i,
                504 => {}
                other => panic!("{workers} worker(s): marker {i}: status {other}: {probe:?}"),
            }
        }
        assert!(
            marked < workers,
            "{workers} worker(s): a connection on none of the {marked} marked workers"
        );
        let stored = session.get(&format!("{PREFIX}{marked}"));
        assert_eq!(
            stored.header("cache-status"),
            Some("ringgate; fwd=uri-miss; stored"),
            "{workers} worker(s): marking worker {marked}: {stored:?}"
        );
        self.marked.borrow_mut().insert(addr, marked + 1);
        marked
    }
}
