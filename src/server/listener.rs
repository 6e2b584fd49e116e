//! `SO_REUSEPORT` listening sockets: one per worker per configured address.
//!
//! All sockets for an address are bound on the control thread before any worker starts, so
//! bind errors surface at start-up and a port-0 address resolves to one real port that every
//! worker then shares.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog for each listening socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Binds `workers` sockets to every address; returns them grouped per worker and the
/// addresses actually bound (port 0 resolved), in `addrs` order.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let first = bind_one(*addr)?;
        let actual = first.local_addr()?;
        bound.push(actual);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind_one(actual)?);
        }
        for (worker, socket) in per_worker.iter_mut().zip(sockets) {
            worker.push(socket);
        }
    }
    Ok((per_worker, bound))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_to_one_shared_port() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let (sockets, bound) = bind_all(&[addr], 3).expect("bind");
        assert_eq!(sockets.len(), 3);
        assert_ne!(bound[0].port(), 0);
        for worker in &sockets {
            assert_eq!(worker[0].local_addr().expect("addr"), bound[0]);
        }
    }
}
