//! A composite as the runtime sees it: compiled once at load, immutable, shared by every
//! worker through the snapshot.
//!
//! Calls keep their config order (the order of the output's keys and of merges); the edges
//! of the call graph are each call's `deps`, and `order` is one topological order of them
//! (the load-time proof that the graph has no cycle).

use std::time::Duration;

use super::template::Template;
use crate::config::UpstreamId;
use crate::json::{FieldPath, Segment, Shape};

/// Default `max_part_bytes`: the largest body a call may answer with.
pub const DEFAULT_MAX_PART_BYTES: usize = 1 << 20;
/// Default `timeout` of a composite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `max_fanout`.
pub const DEFAULT_MAX_FANOUT: usize = 50;

/// Client fields `forward_headers` may not name: the gateway writes its own for each call
/// (forwarding, request id, trace context, framing, content negotiation), so a listed one
/// would be dropped; the configuration refuses them instead.
pub const GATEWAY_FIELDS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "via",
    "traceparent",
    "tracestate",
    "host",
    "content-length",
    "transfer-encoding",
    "content-type",
    "accept",
];

/// One `[composites.NAME]`.
#[derive(Debug)]
pub struct Composite {
    /// The configured name (metrics, logs).
    pub name: Box<str>,
    /// Deadline of the whole composition.
    pub timeout: Duration,
    /// The calls, in config order.
    pub calls: Vec<CallPlan>,
    /// A topological order of the calls (dependencies first).
    pub order: Vec<usize>,
    /// Route parameters the templates use, by slot; each route maps them to its own.
    pub params: Vec<Box<str>>,
    /// Whether a call sends the client's body (the route reads it before any call).
    pub client_body: bool,
}

/// One `[[composites.NAME.calls]]`.
#[derive(Debug)]
pub struct CallPlan {
    /// The call's name (`Composite-Missing`, problem details, metrics).
    pub name: Box<str>,
    /// The upstream group it goes to.
    pub group: UpstreamId,
    /// Request method.
    pub method: &'static str,
    /// Whether the method is idempotent (retries after sending, hedging).
    pub idempotent: bool,
    /// Request target template.
    pub path: Template,
    /// What the request carries.
    pub body: CallBody,
    /// The call's own timeout (within the composite's).
    pub timeout: Option<Duration>,
    /// A failure fails the whole composite (502/504) instead of being left out.
    pub required: bool,
    /// `target`, `allow`, `deny`, `rename`, `collection`.
    pub shape: Shape,
    /// Where the result goes in the output.
    pub into: Placement,
    /// Calls whose results this call's templates (or fan-out) read.
    pub deps: Vec<usize>,
    /// `foreach`: one call per element of an earlier result.
    pub fanout: Option<Fanout>,
    /// `hedge.after`.
    pub hedge_after: Option<Duration>,
    /// Largest body accepted.
    pub max_part_bytes: usize,
    /// Client headers forwarded (lower-case names).
    pub forward_headers: Vec<Box<str>>,
    /// Values other calls read from this call's document (relative to its `target`).
    pub lookups: Vec<Lookup>,
    /// A fan-out call stitches its results into this call's document.
    pub stitched_into: bool,
    /// The `[caches.NAME]` its GET answers are looked up in and stored in.
    pub cache: Option<crate::cache::CacheId>,
}

impl CallPlan {
    /// Whether the call's document goes into the output as the bytes that arrived.
    pub fn spliced_raw(&self) -> bool {
        self.shape.is_identity()
            && !self.stitched_into
            && self.fanout.is_none()
            && matches!(self.into, Placement::Key(_))
    }
}

/// What a call sends as its body.
#[derive(Debug)]
pub enum CallBody {
    /// Nothing.
    None,
    /// The client's request body, as received.
    Client,
    /// A JSON body rendered from a template.
    Template(Template),
}

/// Where a call's result goes in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Under this key path (default: the call's name).
    Key(Vec<Box<str>>),
    /// Merged into the root object (`into = "."`).
    Root,
    /// Nowhere of its own: a fan-out call stitched into another call's document.
    Stitched,
}

/// A value read from a call's document.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The path, relative to the call's `target`.
    pub path: FieldPath,
    /// Every value the path reaches, arrays flattened (`foreach`); else only the first.
    pub many: bool,
}

/// `foreach` and its options.
#[derive(Debug)]
pub struct Fanout {
    /// The call whose document holds the array.
    pub source: usize,
    /// Index of the lookup on `source` that collects the values.
    pub lookup: usize,
    /// The most distinct values; more fail the call.
    pub max: usize,
    /// One call with a list parameter instead of one per value.
    pub batch: Option<Batch>,
    /// Where each result is written back into `source`'s document.
    pub stitch: Option<Stitch>,
}

/// `batch = { param, max, key }`.
#[derive(Debug)]
pub struct Batch {
    /// Query parameter that carries the comma-separated values.
    pub param: Box<str>,
    /// Values per call.
    pub max: usize,
    /// The field of each returned element that holds its value.
    pub key: FieldPath,
}

/// `stitch`: the result of an element's call is written into that element.
#[derive(Debug)]
pub struct Stitch {
    /// The path to the elements in the source document (relative to its target).
    pub elements: Vec<Segment>,
    /// The member of an element holding its value; `None`: the element is the value.
    pub value_key: Option<Box<str>>,
    /// The member the result is written to; `None`: the result replaces the element.
    pub field: Option<Box<str>>,
}
