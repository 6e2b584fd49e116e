//! Checks whether an idle pooled connection is still usable before it is handed out.
//!
//! A keep-alive connection the upstream closed while it sat in the pool is the classic proxy
//! bug ("upstream prematurely closed connection"): the FIN is already queued on the socket,
//! but nothing reads it until the next request is written. One non-blocking `MSG_PEEK` on
//! checkout sees it. The retry of idempotent requests covers the race this cannot (a close
//! that arrives after the check).
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// What a peek at an idle connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Nothing to read: the connection is idle and open.
    Open,
    /// End of stream, an error, or unsolicited bytes: the connection must not be reused.
    Unusable,
}

/// Peeks at the socket without blocking and without consuming anything.
pub fn check(socket: &impl AsRawFd) -> Liveness {
    let mut byte = [0u8; 1];
    // SAFETY: the fd is owned by `socket`, which the caller borrows for the duration of the
    // call, so it is open; `byte` is a valid, writable 1-byte buffer that outlives the call.
    // MSG_DONTWAIT makes the call non-blocking whatever the socket's mode (io_uring sockets
    // are blocking), MSG_PEEK leaves any data in place. Measured need: socket2's safe
    // `SockRef` requires `AsFd`, which monoio's TcpStream does not implement.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
        Liveness::Open
    } else {
        Liveness::Unusable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn open_idle_socket_is_open() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        assert_eq!(check(&client), Liveness::Open);
    }

    #[test]
    fn closed_by_peer_is_unusable() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        drop(server);
        // A blocking peek returns 0 once the FIN arrived: waits without sleeping.
        let mut b = [0u8; 1];
        assert_eq!(client.peek(&mut b).expect("peek"), 0);
        assert_eq!(check(&client), Liveness::Unusable);
    }

    #[test]
    fn unsolicited_bytes_make_it_unusable() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        server.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        // A blocking peek waits until the byte is there.
        client.peek(&mut b).expect("peek");
        assert_eq!(check(&client), Liveness::Unusable);
    }
}
