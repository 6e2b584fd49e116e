//! The executor: runs a composite's calls on the worker that owns the client connection.
//!
//! Every call whose dependencies are done starts at once; a call whose dependency failed
//! fails too (`missing_input`) without being sent. All calls of one composition are futures
//! polled by this one task (no spawning, no cross-core hop); each goes through a [`Caller`],
//! which in the gateway is `proxy::call` (the worker's pools, balancers, health, retries and
//! breakers). A required call that fails ends the composition at once: the futures still
//! running are dropped, which cancels them, closes their upstream connections and gives
//! their breaker tickets back as cancelled (see `proxy::call`). The composite's deadline
//! does the same to whatever is still running or waiting.
//!
//! What a call answered is kept as its body bytes plus the values other calls read from it
//! (extracted as soon as it arrives); shaping happens once, at assembly, when every part is
//! in. Arrival order never reaches the output.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::plan::{CallBody, CallPlan, Composite};
use std::borrow::Cow;

use super::template::{encode_into, Source, Value};
use crate::config::UpstreamId;
use crate::json::{check, Node, Segment};

/// One request the executor asks its [`Caller`] to send.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The call it belongs to (headers it forwards, its name for traces).
    pub call: &'a CallPlan,
    /// The group.
    pub group: UpstreamId,
    /// Method.
    pub method: &'a str,
    /// Origin-form target, percent-encoded.
    pub target: &'a str,
    /// The body (empty for none).
    pub body: &'a [u8],
    /// Whether a failure after sending may be retried.
    pub idempotent: bool,
    /// When the call gives up, every attempt included.
    pub deadline: Instant,
    /// Largest body accepted.
    pub max_body: usize,
    /// Hedging delay.
    pub hedge_after: Option<Duration>,
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// Its `Cache-Control` value, if any.
    pub cache_control: Option<Box<str>>,
}

/// Why a call has no usable answer. Only gateway-level facts: never a backend's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The call's own timeout or the composite's deadline passed.
    Timeout,
    /// The group's breaker is open or no target is healthy.
    Unavailable,
    /// No connection could be opened.
    Connect,
    /// The upstream closed, reset or answered malformed HTTP.
    Upstream,
    /// The body is over `max_part_bytes`.
    TooLarge,
    /// The upstream answered a status outside 2xx.
    Status(u16),
    /// The body is not one well-formed JSON value.
    NotJson,
    /// Shaping failed (`target` missing, `collection` on a non-array).
    Shape,
    /// A call it depends on failed, or a value it needs was missing.
    MissingInput,
    /// `foreach` found more distinct values than `max_fanout`.
    FanoutExceeded,
}

impl Reason {
    /// A fixed label (metrics, logs, problem details).
    pub fn label(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::Connect => "connect",
            Reason::Upstream => "upstream_error",
            Reason::TooLarge => "too_large",
            Reason::Status(_) => "bad_status",
            Reason::NotJson => "not_json",
            Reason::Shape => "shape",
            Reason::MissingInput => "missing_input",
            Reason::FanoutExceeded => "fanout_exceeded",
        }
    }
}

/// Sends one request; the gateway's implementation is `proxy::call`. Dropping the future
/// must cancel the request.
pub trait Caller {
    /// Sends `request` and reads the whole answer.
    fn call(&self, request: Request<'_>) -> impl Future<Output = Result<Reply, Reason>>;
}

/// What the client's request offers the templates.
pub struct Inputs<'a> {
    /// Route parameter values, by the composite's parameter slot.
    pub params: Vec<&'a str>,
    /// The client's raw query string (without `?`).
    pub query: Option<&'a str>,
    /// Looks up a client header by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// The authenticated consumer's name.
    pub consumer: Option<&'a str>,
    /// The client's body (for `body = "client"`).
    pub body: Bytes,
}

/// A successful call's answer, kept for assembly.
#[derive(Debug)]
pub struct Part {
    /// The body without surrounding white space: checked JSON for spliced and referenced
    /// calls, UTF-8 text for the rest (shaping checks it).
    pub text: String,
    /// Its `Cache-Control`.
    pub cache_control: Option<Box<str>>,
    /// Raw JSON values of each lookup (`CallPlan::lookups`).
    pub values: Vec<Vec<Box<str>>>,
    /// A fan-out call's answers.
    pub fan: Option<FanPart>,
}

/// The answers of a fan-out call.
#[derive(Debug, Default)]
pub struct FanPart {
    /// The distinct values, in first-appearance order.
    pub values: Vec<Box<str>>,
    /// One answer per value, or per batch of `batch.max` values: checked JSON text.
    pub replies: Vec<Result<Answer, Reason>>,
}

impl FanPart {
    /// Whether every sub-call answered.
    pub fn complete(&self) -> bool {
        self.replies.iter().all(Result::is_ok)
    }
}

/// A checked answer of a fan-out's sub-call.
#[derive(Debug)]
pub struct Answer {
    /// The JSON text, without surrounding white space.
    pub text: String,
    /// Its `Cache-Control`.
    pub cache_control: Option<Box<str>>,
}

/// What happened to one call.
#[derive(Debug)]
pub enum Slot {
    /// Not started (a dependency is pending), or the composition ended first: never sent.
    Waiting,
    /// In flight; in an [`Outcome`], dropped unfinished because a required call failed
    /// first (a request may have reached the upstream).
    Running,
    /// Answered.
    Done(Part),
    /// Failed or left out.
    Failed(Reason),
}

/// The result of running a composite.
#[derive(Debug)]
pub struct Outcome {
    /// Per call, in config order.
    pub slots: Vec<Slot>,
    /// Per call: how long it ran (`None`: never sent); a call dropped unfinished (the
    /// deadline, or a required call failed first), from its start to the drop.
    pub elapsed: Vec<Option<Duration>>,
    /// The required call that failed first, if one did: the composition is over.
    pub failed_required: Option<(usize, Reason)>,
}

/// Runs every call of `plan` and returns what each answered.
pub async fn run<C: Caller>(
    plan: &Composite,
    inputs: &Inputs<'_>,
    caller: &C,
    started: Instant,
) -> Outcome {
    let deadline = started + plan.timeout;
    let n = plan.calls.len();
    let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Waiting).collect();
    let mut elapsed = vec![None; n];
    let mut began = vec![None; n];
    let mut running = FuturesUnordered::new();
    loop {
        match start_ready(plan, inputs, &mut slots) {
            Err(failed) => return finish(slots, elapsed, &began, Some(failed)),
            Ok(ready) => {
                for (i, work) in ready {
                    let call = &plan.calls[i];
                    let now = Instant::now();
                    began[i] = Some(now);
                    let call_deadline = call.timeout.map_or(deadline, |t| deadline.min(now + t));
                    running.push(perform(caller, call, i, work, call_deadline));
                }
            }
        }
        if running.is_empty() {
            break;
        }
        let next = monoio::select! {
            next = running.next() => next,
            _ = monoio::time::sleep_until(deadline.into()) => None,
        };
        let Some((i, took, result)) = next else {
            // The deadline: everything not done timed out.
            drop(running);
            for slot in &mut slots {
                if matches!(slot, Slot::Waiting | Slot::Running) {
                    *slot = Slot::Failed(Reason::Timeout);
                }
            }
            let failed = first_required_failure(plan, &slots);
            return finish(slots, elapsed, &began, failed);
        };
        elapsed[i] = Some(took);
        let call = &plan.calls[i];
        match result.and_then(|done| accept(call, done)) {
            Ok(part) => slots[i] = Slot::Done(part),
            Err(reason) => {
                slots[i] = Slot::Failed(reason);
                if call.required {
                    return finish(slots, elapsed, &began, Some((i, reason)));
                }
            }
        }
    }
    finish(slots, elapsed, &began, None)
}

/// The outcome; calls that started but did not finish (dropped by the deadline or a failed
/// required call) get their time until now.
fn finish(
    slots: Vec<Slot>,
    mut elapsed: Vec<Option<Duration>>,
    began: &[Option<Instant>],
    failed_required: Option<(usize, Reason)>,
) -> Outcome {
    let now = Instant::now();
    for (took, began) in elapsed.iter_mut().zip(began) {
        if took.is_none() {
            *took = began.map(|b| now.saturating_duration_since(b));
        }
    }
    Outcome {
        slots,
        elapsed,
        failed_required,
    }
}

fn first_required_failure(plan: &Composite, slots: &[Slot]) -> Option<(usize, Reason)> {
    plan.calls
        .iter()
        .zip(slots)
        .enumerate()
        .find_map(|(i, (c, s))| match s {
            Slot::Failed(reason) if c.required => Some((i, *reason)),
            _ => None,
        })
}

/// What a call's future yields: its index, how long it took, and its answer(s).
type Finished = (usize, Duration, Result<Answered, Reason>);

/// A call's raw result before it is checked.
enum Answered {
    One(Reply),
    Fan(FanPart),
}

/// What a call will send, rendered from the parts in hand before it starts.
enum Work {
    One {
        target: String,
        body: Bytes,
    },
    Fan {
        values: Vec<Box<str>>,
        requests: Vec<(String, Bytes)>,
    },
}

/// Marks every waiting call whose dependencies are done as running (config order) and
/// returns what each will send; calls whose dependencies failed, or whose inputs are missing,
/// fail. Repeats until nothing changes. `Err`: a required call failed.
fn start_ready(
    plan: &Composite,
    inputs: &Inputs<'_>,
    slots: &mut [Slot],
) -> Result<Vec<(usize, Work)>, (usize, Reason)> {
    let mut ready = Vec::new();
    loop {
        let mut changed = false;
        for (i, call) in plan.calls.iter().enumerate() {
            if !matches!(slots[i], Slot::Waiting) {
                continue;
            }
            let dep_failed = call
                .deps
                .iter()
                .any(|&d| matches!(slots[d], Slot::Failed(_)));
            let deps_done = call.deps.iter().all(|&d| matches!(slots[d], Slot::Done(_)));
            let prepared = if dep_failed {
                Err(Reason::MissingInput)
            } else if deps_done {
                prepare(call, inputs, slots)
            } else {
                continue;
            };
            changed = true;
            match prepared {
                Ok(work) => {
                    slots[i] = Slot::Running;
                    ready.push((i, work));
                }
                Err(reason) => {
                    slots[i] = Slot::Failed(reason);
                    if call.required {
                        return Err((i, reason));
                    }
                }
            }
        }
        if !changed {
            return Ok(ready);
        }
    }
}

/// Renders a call's target(s) and body from the client's request and the parts in hand.
fn prepare(call: &CallPlan, inputs: &Inputs<'_>, slots: &[Slot]) -> Result<Work, Reason> {
    let Some(fanout) = &call.fanout else {
        let target = render_target(call, inputs, slots, None).ok_or(Reason::MissingInput)?;
        let body = render_body(call, inputs, slots, None).ok_or(Reason::MissingInput)?;
        return Ok(Work::One { target, body });
    };
    let Slot::Done(source) = &slots[fanout.source] else {
        return Err(Reason::MissingInput);
    };
    let found = source
        .values
        .get(fanout.lookup)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let values = distinct(found);
    if values.len() > fanout.max {
        return Err(Reason::FanoutExceeded);
    }
    let mut requests = Vec::new();
    match &fanout.batch {
        Some(batch) => {
            let base = render_target(call, inputs, slots, None).ok_or(Reason::MissingInput)?;
            let body = render_body(call, inputs, slots, None).ok_or(Reason::MissingInput)?;
            for chunk in values.chunks(batch.max) {
                requests.push((batch_target(&base, &batch.param, chunk), body.clone()));
            }
        }
        None => {
            for value in &values {
                let target =
                    render_target(call, inputs, slots, Some(value)).ok_or(Reason::MissingInput)?;
                let body =
                    render_body(call, inputs, slots, Some(value)).ok_or(Reason::MissingInput)?;
                requests.push((target, body));
            }
        }
    }
    Ok(Work::Fan { values, requests })
}

fn render_target<'v>(
    call: &CallPlan,
    inputs: &'v Inputs<'_>,
    slots: &'v [Slot],
    each: Option<&'v str>,
) -> Option<String> {
    let mut out = String::with_capacity(64);
    call.path
        .render_target(&mut |s| value(s, inputs, slots, each, false), &mut out)?;
    Some(out)
}

fn render_body<'v>(
    call: &CallPlan,
    inputs: &'v Inputs<'_>,
    slots: &'v [Slot],
    each: Option<&'v str>,
) -> Option<Bytes> {
    match &call.body {
        CallBody::None => Some(Bytes::new()),
        CallBody::Client => Some(inputs.body.clone()),
        CallBody::Template(t) => {
            let mut out = Vec::new();
            t.render_body(&mut |s| value(s, inputs, slots, each, true), &mut out)?;
            Some(Bytes::from(out))
        }
    }
}

/// Sends one call (all of a fan-out's requests at once) and reads the answer(s).
async fn perform<C: Caller>(
    caller: &C,
    call: &CallPlan,
    index: usize,
    work: Work,
    deadline: Instant,
) -> Finished {
    let started = Instant::now();
    let result = match work {
        Work::One { target, body } => send(caller, call, &target, &body, deadline)
            .await
            .map(Answered::One),
        Work::Fan { values, requests } => fan_out(caller, call, values, &requests, deadline)
            .await
            .map(Answered::Fan),
    };
    (index, started.elapsed(), result)
}

/// All of a fan-out's requests at once; a required call stops at its first failure.
async fn fan_out<C: Caller>(
    caller: &C,
    call: &CallPlan,
    values: Vec<Box<str>>,
    requests: &[(String, Bytes)],
    deadline: Instant,
) -> Result<FanPart, Reason> {
    let mut replies: Vec<Option<Result<Answer, Reason>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut set: FuturesUnordered<_> = requests
        .iter()
        .enumerate()
        .map(|(k, (target, body))| async move {
            let reply = send(caller, call, target, body, deadline).await;
            let checked = reply.and_then(|r| {
                let text = json_text(r.body)?;
                check(text.as_bytes()).map_err(|_| Reason::NotJson)?;
                Ok(Answer {
                    text,
                    cache_control: r.cache_control,
                })
            });
            (k, checked)
        })
        .collect();
    while let Some((k, reply)) = set.next().await {
        if let (Err(reason), true) = (&reply, call.required) {
            return Err(*reason);
        }
        replies[k] = Some(reply);
    }
    Ok(FanPart {
        values,
        replies: replies
            .into_iter()
            .map(|r| r.unwrap_or(Err(Reason::Upstream)))
            .collect(),
    })
}

/// One request through the caller, bounded by `deadline`; a status outside 2xx fails.
async fn send<C: Caller>(
    caller: &C,
    call: &CallPlan,
    target: &str,
    body: &[u8],
    deadline: Instant,
) -> Result<Reply, Reason> {
    let request = Request {
        call,
        group: call.group,
        method: call.method,
        target,
        body,
        idempotent: call.idempotent,
        deadline,
        max_body: call.max_part_bytes,
        hedge_after: call.hedge_after,
    };
    // Pinned in place: the timeout holds a reference, not a copy of the call's future.
    let answer = std::pin::pin!(caller.call(request));
    let reply = match monoio::time::timeout_at(deadline.into(), answer).await {
        Err(_) => return Err(Reason::Timeout),
        Ok(reply) => reply?,
    };
    if !(200..300).contains(&reply.status) {
        return Err(Reason::Status(reply.status));
    }
    let mut reply = reply;
    if reply.status == 204 {
        reply.body = Bytes::from_static(b"null");
    }
    Ok(reply)
}

/// Checks an answer and extracts the values other calls read from it.
fn accept(call: &CallPlan, answered: Answered) -> Result<Part, Reason> {
    match answered {
        Answered::One(reply) => {
            let text = json_text(reply.body)?;
            let values = extract(call, &text)?;
            Ok(Part {
                text,
                cache_control: reply.cache_control,
                values,
                fan: None,
            })
        }
        Answered::Fan(fan) => Ok(Part {
            text: String::new(),
            cache_control: None,
            values: Vec::new(),
            fan: Some(fan),
        }),
    }
}

/// A body as UTF-8 text without surrounding white space (no copy when the bytes are not
/// shared).
fn json_text(body: Bytes) -> Result<String, Reason> {
    let mut text = String::from_utf8(Vec::from(body)).map_err(|_| Reason::NotJson)?;
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let end = text.trim_end_matches(is_ws).len();
    text.truncate(end);
    let lead = text.len() - text.trim_start_matches(is_ws).len();
    if lead > 0 {
        text.drain(..lead);
    }
    Ok(text)
}

/// Checks a single call's body as its use requires, then reads its lookups.
fn extract(call: &CallPlan, text: &str) -> Result<Vec<Vec<Box<str>>>, Reason> {
    if call.lookups.is_empty() && !call.spliced_raw() {
        // Shaped and read by nobody: shaping at assembly reads (and checks) it.
        return Ok(Vec::new());
    }
    let text = check(text.as_bytes()).map_err(|_| Reason::NotJson)?;
    let mut values = Vec::with_capacity(call.lookups.len());
    for lookup in &call.lookups {
        let root = match call.shape.targeted(text) {
            Ok(Some(Node::Raw(root))) => root,
            Ok(_) => {
                values.push(Vec::new());
                continue;
            }
            Err(_) => return Err(Reason::NotJson),
        };
        let found = Node::collect(root, lookup.path.segments()).map_err(|_| Reason::NotJson)?;
        let mut out: Vec<Box<str>> = Vec::new();
        for raw in found {
            if lookup.many && raw.starts_with('[') {
                let items = Node::collect(raw, &[Segment::Each]).map_err(|_| Reason::NotJson)?;
                out.extend(items.into_iter().map(Box::from));
            } else {
                out.push(raw.into());
            }
            if !lookup.many && !out.is_empty() {
                break;
            }
        }
        values.push(out);
    }
    Ok(values)
}

/// The value a placeholder stands for, from the client's request and the parts in hand.
fn value<'v>(
    source: &Source,
    inputs: &'v Inputs<'_>,
    slots: &'v [Slot],
    each: Option<&'v str>,
    json: bool,
) -> Option<Value<'v>> {
    match source {
        Source::Param(slot) => inputs
            .params
            .get(*slot)
            .map(|v| Value::Text(Cow::Borrowed(v))),
        Source::Query(name) => {
            let raw = query_value(inputs.query?, name)?;
            let decoded = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .ok()?;
            Some(Value::Text(decoded))
        }
        Source::Header(name) => (inputs.header)(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| Value::Text(Cow::Borrowed(v))),
        Source::Consumer => inputs.consumer.map(|v| Value::Text(Cow::Borrowed(v))),
        Source::Each => each.map(|v| Value::Text(Cow::Borrowed(v))),
        // Not produced by the composition resolver (transform templates only).
        Source::RequestId | Source::ClientIp | Source::Route | Source::ParamName(_) => None,
        Source::Field { call, lookup } => {
            let Slot::Done(part) = slots.get(*call)? else {
                return None;
            };
            let raw: &str = part.values.get(*lookup)?.first()?;
            if json {
                // A JSON `null` is a missing value, like an absent field.
                (!raw.starts_with('n')).then_some(Value::Json(raw))
            } else {
                Node::scalar_text(raw).map(Value::Text)
            }
        }
    }
}

/// The first value of query parameter `name` in `query` (raw, still percent-encoded).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Distinct scalar texts of a fan-out's values, in first-appearance order (nulls, objects
/// and arrays get no call).
fn distinct(values: &[Box<str>]) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    for raw in values {
        if let Some(text) = Node::scalar_text(raw) {
            if !out.iter().any(|v| **v == *text) {
                out.push(text.into());
            }
        }
    }
    out
}

/// `target` with `param=v1,v2,...` appended to its query.
fn batch_target(target: &str, param: &str, values: &[Box<str>]) -> String {
    let mut out = String::with_capacity(target.len() + param.len() + 16 * values.len());
    out.push_str(target);
    out.push(if target.contains('?') { '&' } else { '?' });
    out.push_str(param);
    out.push('=');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_into(v, &mut out);
    }
    out
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
