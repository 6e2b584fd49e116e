//! Answers the gateway gives itself: `respond` routes, error responses (mapped in one table
//! in `error.rs`), and the lingering close that keeps an error answer from being destroyed by
//! a reset.

use std::time::Instant;

use super::connection::{ClientConn, Next, CLIENT_BUF};
use super::context::WorkerContext;
use super::error::ProxyError;
use crate::config::{ErrorFormat, StaticResponse};
use crate::http::problem::{self, Problem};
use crate::http::writer::{
    write_denial_response, write_error_response_retry_after, write_rendered_answer,
    write_static_response, RenderedAnswer,
};
use crate::http::{reason_phrase, BodyFraming, Method, RequestHead};
use crate::io_buf::write_all_reuse;
use crate::policy::{Challenge, Denial};

impl ClientConn {
    /// Answers from a `respond` route.
    pub(super) async fn respond(
        &mut self,
        ctx: &WorkerContext,
        response: &StaticResponse,
        head: &RequestHead,
    ) -> Result<Next, ProxyError> {
        let body_buffered = self.consume_request(head);
        let keep_alive = head.keep_alive && body_buffered && !ctx.drain().is_draining();
        self.out.clear();
        write_static_response(
            &mut self.out,
            response.status,
            &response.headers,
            &response.body,
            head.method_kind == Method::Head,
            head.version,
            keep_alive,
            &self.request_id,
            &self.response_headers,
        );
        if self.tls.is_some() {
            self.finish_secure_head(&ctx.snapshot(), 0);
        }
        self.response_started = true;
        self.exchange.status = response.status;
        self.exchange.bytes_out += self.out.len() as u64;
        write_all_reuse(&mut self.stream, &mut self.out)
            .await
            .map_err(ProxyError::ClientGone)?;
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Answers a granted CORS preflight: `204` with the fields already in
    /// `response_headers` (see `proxy::cors`), no body.
    pub(super) async fn reply_preflight(
        &mut self,
        ctx: &WorkerContext,
        head: &RequestHead,
    ) -> Next {
        let keep_alive =
            head.keep_alive && self.consume_request(head) && !ctx.drain().is_draining();
        self.linger = !keep_alive;
        self.out.clear();
        write_static_response(
            &mut self.out,
            204,
            &[],
            b"",
            true,
            head.version,
            keep_alive,
            &self.request_id,
            &self.response_headers,
        );
        if self.tls.is_some() {
            self.finish_secure_head(&ctx.snapshot(), 0);
        }
        self.response_started = true;
        self.exchange.status = 204;
        self.exchange.bytes_out += self.out.len() as u64;
        let written = write_all_reuse(&mut self.stream, &mut self.out).await;
        if keep_alive && written.is_ok() {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Consumes the request head, and its body if it is already buffered in full.
    /// Returns whether the whole request was consumed (else the connection must close).
    pub(super) fn consume_request(&mut self, head: &RequestHead) -> bool {
        if self.body.is_held() {
            self.input.consume(head.head_len + self.body.raw_len());
            return true;
        }
        let body = match head.framing {
            BodyFraming::None => 0,
            BodyFraming::Length(n) => n,
            BodyFraming::Chunked => {
                self.input.consume(head.head_len);
                return false;
            }
        };
        let total = head.head_len as u64 + body;
        if total <= self.input.len() as u64 {
            self.input.consume(total as usize);
            true
        } else {
            self.input.consume(head.head_len);
            false
        }
    }

    /// Answers an error if no response was started; returns what happens to the connection.
    pub(super) async fn reply_error(
        &mut self,
        ctx: &WorkerContext,
        error: &ProxyError,
        head: Option<&RequestHead>,
    ) -> Next {
        log::debug!("{}: {error}", self.peer);
        ctx.metrics().error(error.cause());
        let Some((status, message)) = error.response() else {
            return Next::Close;
        };
        if self.response_started {
            return Next::Close;
        }
        // Read from the request's head before its body is consumed.
        let web = self.grpc_web_answer(head);
        let keep_alive = match head {
            Some(head) if error.keeps_connection() && head.keep_alive => self.consume_request(head),
            _ => false,
        };
        self.cache_status_for_gateway_answer();
        self.linger = !keep_alive;
        self.out.clear();
        if self.grpc || web.is_some() {
            let code = crate::http2::grpc::code_for_status(status);
            crate::http2::grpc::write_status_response(
                &mut self.out,
                code,
                message,
                super::grpc_web::answer_content_type(web),
                (&self.request_id, &self.response_headers),
            );
        } else if self.errors == ErrorFormat::Problem {
            let problem = Problem {
                status,
                cause: error.problem_cause(),
                title: reason_phrase(status),
                detail: message,
                request_id: b"",
                violations: &[],
            };
            self.write_problem(&problem, &Challenge::None, error.retry_after(), keep_alive);
        } else {
            write_error_response_retry_after(
                &mut self.out,
                status,
                message,
                keep_alive,
                &self.request_id,
                error.retry_after(),
                &self.response_headers,
            );
        }
        if self.tls.is_some() {
            self.finish_secure_head(&ctx.snapshot(), 0);
        }
        self.exchange.status = status;
        self.exchange.bytes_out += self.out.len() as u64;
        let written = write_all_reuse(&mut self.stream, &mut self.out).await;
        if keep_alive && written.is_ok() {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Answers a request a policy refused (401 with its challenge, 403, ...). The connection
    /// stays open when the request was read whole, like any answer the client caused.
    pub(super) async fn reply_denied(
        &mut self,
        ctx: &WorkerContext,
        denial: &Denial,
        head: &RequestHead,
    ) -> Next {
        // Read from the request's head before its body is consumed.
        let web = self.grpc_web_answer(Some(head));
        let keep_alive =
            head.keep_alive && self.consume_request(head) && !ctx.drain().is_draining();
        self.linger = !keep_alive;
        self.cache_status_for_gateway_answer();
        self.out.clear();
        if self.grpc || web.is_some() {
            let code = crate::http2::grpc::code_for_status(denial.status);
            crate::http2::grpc::write_status_response(
                &mut self.out,
                code,
                denial.message,
                super::grpc_web::answer_content_type(web),
                (&self.request_id, &self.response_headers),
            );
        } else if self.errors == ErrorFormat::Problem || !denial.violations.is_empty() {
            // A `validate` refusal lists its violations, which only problem+json can carry.
            let problem = Problem {
                status: denial.status,
                cause: denial.cause,
                title: reason_phrase(denial.status),
                detail: denial.message,
                request_id: b"",
                violations: &denial.violations,
            };
            // `Retry-After` of a refusal, if any, is among the response fields already.
            self.write_problem(&problem, &denial.challenge, None, keep_alive);
        } else {
            write_denial_response(
                &mut self.out,
                denial,
                keep_alive,
                &self.request_id,
                &self.response_headers,
            );
        }
        if self.tls.is_some() {
            self.finish_secure_head(&ctx.snapshot(), 0);
        }
        self.response_started = true;
        self.exchange.status = denial.status;
        self.exchange.bytes_out += self.out.len() as u64;
        let written = write_all_reuse(&mut self.stream, &mut self.out).await;
        if keep_alive && written.is_ok() {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Writes a problem+json answer into `out`, with the request's id (the body is rendered
    /// in `scratch` first, for its length).
    fn write_problem(
        &mut self,
        problem: &Problem<'_>,
        challenge: &Challenge,
        retry_after: Option<u64>,
        keep_alive: bool,
    ) {
        let ClientConn {
            out,
            scratch,
            request_id,
            response_headers,
            ..
        } = self;
        scratch.clear();
        let problem = Problem {
            request_id,
            ..*problem
        };
        problem::write_body(scratch, &problem);
        write_rendered_answer(
            out,
            &RenderedAnswer {
                status: problem.status,
                content_type: problem::CONTENT_TYPE,
                body: scratch,
                challenge,
                retry_after,
                keep_alive,
                request_id,
                extra_headers: response_headers,
            },
        );
    }

    /// Closes after an error answer without losing it: closing a socket with unread input
    /// makes the kernel send a reset, which can destroy the answer before the client reads
    /// it. So: shut down our side, then read and discard (bounded in time and bytes) until
    /// the client closes.
    pub(super) async fn linger_close(&mut self) {
        use monoio::io::AsyncWriteRent;
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.input.consume(self.input.len());
            let read = self.input.fill(&mut self.stream, CLIENT_BUF);
            match monoio::time::timeout_at(deadline.into(), read).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }
}

/// Longest lingering close.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
/// Most bytes discarded in a lingering close.
const LINGER_BYTES: usize = 256 * 1024;
