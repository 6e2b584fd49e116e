//! Worker threads, core pinning, driver choice, listeners, signals and shutdown.
//!
//! CONTRACT (tests and main depend on these):
//! - `Server::start(Arc<Snapshot>) -> Result<RunningServer, ServerError>`: binds every listener
//!   (port 0 allowed: all workers share the port the first bind got) before returning, so a
//!   client may connect as soon as it returns.
//! - `RunningServer::local_addrs()`: bound addresses, in `server.listen` order.
//! - `RunningServer::drivers()`: the driver each worker runs.
//! - `RunningServer::shutdown(self)`: graceful stop (stop accepting, finish in-flight
//!   requests within `graceful_shutdown`), blocks until every worker exited.
//! - `RunningServer::store(Arc<Snapshot>)`: swap in a new snapshot (reload).
