//! The file's shape of `[composites.NAME]` and `[[composites.NAME.calls]]` (see
//! docs/composition.md). Mirrors the TOML and nothing more, like `file.rs`.

use serde::de::{Deserialize, Deserializer, Visitor};
use serde::Deserialize as DeriveDeserialize;
use toml::Spanned;

use super::file::Ordered;
use super::units::{DurationValue, SizeValue};

/// One `[composites.NAME]` table.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComposite {
    /// Deadline of the whole composition.
    pub timeout: Option<Spanned<DurationValue>>,
    /// Client headers forwarded to every call.
    pub forward_headers: Option<Vec<Spanned<String>>>,
    /// Largest body a call may answer with (each call may set its own).
    pub max_part_bytes: Option<Spanned<SizeValue>>,
    /// `[[composites.NAME.calls]]`.
    #[serde(default)]
    pub calls: Vec<RawCall>,
}

/// One `[[composites.NAME.calls]]` entry.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    /// Unique within the composite; the result's key unless `into` says otherwise.
    pub name: Spanned<String>,
    /// The upstream group called.
    pub upstream: Spanned<String>,
    /// Request target template.
    pub path: Spanned<String>,
    /// Request method (default GET).
    pub method: Option<Spanned<String>>,
    /// `"client"` or a JSON body template.
    pub body: Option<Spanned<String>>,
    /// The call's own timeout.
    pub timeout: Option<Spanned<DurationValue>>,
    /// Whether a failure fails the composite.
    pub required: Option<Spanned<bool>>,
    /// Sub-value of the answer taken before anything else.
    pub target: Option<Spanned<String>>,
    /// Fields kept.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Fields removed.
    pub deny: Option<Vec<Spanned<String>>>,
    /// Fields renamed: path = new name.
    pub rename: Option<Ordered<String>>,
    /// Where the result goes: a key path, or `"."` for the root.
    pub into: Option<Spanned<String>>,
    /// Wrap a top-level array: `true` (under `collection`) or the key to put it under.
    pub collection: Option<Spanned<RawCollection>>,
    /// Fan-out: a path to the values of an earlier call (`orders.items[*].product_id`).
    pub foreach: Option<Spanned<String>>,
    /// The most distinct fan-out values.
    pub max_fanout: Option<Spanned<i64>>,
    /// One call with a list parameter instead of one per value.
    pub batch: Option<Spanned<RawBatch>>,
    /// Where fan-out results are written back (`orders.items[*].product`).
    pub stitch: Option<Spanned<String>>,
    /// A second attempt when the first is slow.
    pub hedge: Option<Spanned<RawHedge>>,
    /// Client headers forwarded to this call (instead of the composite's list).
    pub forward_headers: Option<Vec<Spanned<String>>>,
    /// Largest body this call may answer with.
    pub max_part_bytes: Option<Spanned<SizeValue>>,
    /// A `[caches.NAME]` the call's GET answers are looked up in and stored in.
    pub cache: Option<Spanned<String>>,
}

/// `batch = { param = "ids", max = 50, key = "id" }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Query parameter carrying the comma-separated values.
    pub param: Spanned<String>,
    /// Values per call.
    pub max: Option<Spanned<i64>>,
    /// Field of each returned element that holds its value (default `id`).
    pub key: Option<Spanned<String>>,
}

/// `hedge = { after = "50ms" }`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHedge {
    /// How long the first attempt may go without an answer before the second starts.
    pub after: Spanned<DurationValue>,
}

/// `collection = true | false | "NAME"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCollection {
    /// `true` (key `collection`) or `false` (none).
    Enabled(bool),
    /// The key the array goes under.
    Key(String),
}

impl<'de> Deserialize<'de> for RawCollection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CollectionVisitor)
    }
}

struct CollectionVisitor;

impl Visitor<'_> for CollectionVisitor {
    type Value = RawCollection;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("true, false or the key to put the array under")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(RawCollection::Enabled(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawCollection::Key(v.to_string()))
    }
}
