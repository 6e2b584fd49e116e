//! Full-duplex exchanges: an HTTP/2 client's streamed request body relayed to an h2/h2c
//! upstream stream while the response comes back, so that a call whose client waits for each
//! answer before it sends more (a ping-pong gRPC bidi stream) does not deadlock.
//!
//! The two directions are disjoint halves of the exchange: the request body is taken out of
//! the client's stream (`http2::downstream::RequestBody`) and the request's sending half out
//! of the upstream stream (`http2::upstream::RequestSender`), and they are relayed by the
//! same bounded relay as any body (`body::relay`: `body_idle`, the size cap, the minimum
//! rate). That relay (the pump) runs in the stream's own task: first raced against the
//! response head, then driven by the upstream stream whenever the response is waited for.
//! Either side's failure ends both: a client reset drops the stream's pipeline (and with it
//! the upstream stream, which h2 resets), an upstream reset fails the response and drops the
//! pump, and a failed pump fails the response read, its cause kept here for the answer.
//!
//! The HTTP/1.1 path never gets here (`ClientConn::duplex_pump` answers `None` for it).

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::Poll;

use super::body::{relay, BodyEnd, RelayError, RelayOptions};
use super::connection::{ClientConn, BODY_BUF};
use super::error::ProxyError;
use super::stages::Unobserved;
use crate::http::{BodyFraming, RequestHead};
use crate::http2::downstream::RequestBody;
use crate::http2::pump::{Pump, SharedPump};
use crate::http2::upstream::RequestSender;
use crate::io_buf::ReadBuf;
use crate::tls::{ClientStream, UpstreamStream};
use crate::upstream::UpstreamConn;

/// What the pump of the current exchange did, shared with it.
#[derive(Default)]
pub(super) struct Duplex {
    /// Body bytes relayed (chunked bodies; a length was counted from the head).
    relayed: Cell<u64>,
    /// Why the pump failed.
    failed: Cell<Option<RelayError>>,
}

impl std::fmt::Debug for Duplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duplex")
            .field("relayed", &self.relayed.get())
            .finish_non_exhaustive()
    }
}

impl ClientConn {
    /// The request body's pump when this exchange can be full-duplex: an h2 client's body
    /// still streaming, to an h2 upstream stream whose head went out. `None` otherwise
    /// (HTTP/1.1 on either side, or no body left), and the body is sent before the response
    /// is read.
    pub(super) fn duplex_pump(
        &mut self,
        conn: &mut UpstreamConn,
        head: &RequestHead,
        opts: RelayOptions,
    ) -> Option<Pump> {
        let end = match head.framing {
            BodyFraming::None => return None,
            BodyFraming::Length(n) => BodyEnd::Length(n),
            BodyFraming::Chunked => BodyEnd::Chunked,
        };
        let (ClientStream::H2(down), UpstreamStream::H2(up)) = (&mut self.stream, &mut conn.stream)
        else {
            return None;
        };
        if !down.body_pending() {
            return None;
        }
        let sender = up.take_request()?;
        let body = down.take_request_body();
        // Body bytes the pipeline already read go first.
        let mut buf = ReadBuf::with_capacity(BODY_BUF);
        buf.extend_from_slice(self.input.data());
        self.input.consume(self.input.len());
        let state = Rc::new(Duplex::default());
        self.duplex = Some(Rc::clone(&state));
        Some(pump(body, buf, sender, end, opts, state))
    }

    /// Relays the request body until it ends or the response head arrives, whichever is
    /// first; in the second case the upstream stream drives the rest of the body while the
    /// response is read.
    pub(super) async fn send_body_duplex(
        &mut self,
        conn: &mut UpstreamConn,
        pump: Pump,
    ) -> Result<(), ProxyError> {
        let (ClientStream::H2(down), UpstreamStream::H2(up)) = (&mut self.stream, &mut conn.stream)
        else {
            return Ok(());
        };
        let pump = SharedPump::new(pump);
        let failed = {
            let mut head = std::pin::pin!(up.response_head());
            poll_fn(|cx| {
                if let Poll::Ready(e) = pump.poll_failure(cx) {
                    return Poll::Ready(Some(e));
                }
                if !pump.is_running() {
                    return Poll::Ready(None);
                }
                head.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        if let Some(e) = failed {
            return Err(self.duplex_failure().unwrap_or(ProxyError::UpstreamIo(e)));
        }
        if pump.is_running() {
            down.drive(pump.clone());
            up.drive(pump);
        }
        Ok(())
    }

    /// Ends the exchange's duplex part: the relayed bytes are counted, and a failure the pump
    /// caused is answered as what it was (the client's timeout, a body too large, a client
    /// gone) rather than as the upstream failure the response read saw.
    pub(super) fn finish_duplex<T>(
        &mut self,
        result: Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        let Some(state) = &self.duplex else {
            return result;
        };
        self.exchange.bytes_in += state.relayed.get();
        let result = match result {
            Err(e) => Err(self.duplex_failure().unwrap_or(e)),
            ok => ok,
        };
        self.duplex = None;
        result
    }

    /// The pump's failure, as the client's answer.
    fn duplex_failure(&self) -> Option<ProxyError> {
        let failed = self.duplex.as_ref()?.failed.take()?;
        Some(super::forward::request_body_error(failed))
    }
}

/// The relay of `body` (after what `buf` holds) to `sender`.
fn pump(
    mut body: RequestBody,
    mut buf: ReadBuf,
    mut sender: RequestSender,
    end: BodyEnd,
    opts: RelayOptions,
    state: Rc<Duplex>,
) -> Pump {
    Box::pin(async move {
        let mut scratch = Vec::new();
        let relayed = relay(
            &mut body,
            &mut buf,
            &mut sender,
            end,
            opts,
            &mut scratch,
            &mut Unobserved,
        )
        .await;
        match relayed {
            Ok(n) => {
                if end == BodyEnd::Chunked {
                    state.relayed.set(n);
                }
                Ok(())
            }
            Err(e) => {
                state.failed.set(Some(e));
                Err(io::Error::other("request body relay failed"))
            }
        }
    })
}
