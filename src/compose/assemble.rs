//! The output document: every part placed in config order, whatever order they arrived in.
//!
//! 1. Fan-out answers are shaped per element (a batch answer is split into its elements by
//!    `batch.key`) and keyed by their value.
//! 2. Each call's document becomes a node: the raw text for a call with no field operation
//!    (spliced as the bytes that arrived), else `select` (target, allow, deny), the stitches
//!    of fan-out calls into it, then `finish` (rename, collection).
//! 3. Nodes are placed in config order: under their key path, or merged at the root. A
//!    write to a key that is already there replaces its value in its first position: the
//!    later call in config order wins, and the collision is counted.
//!
//! Same parts in, same bytes out.

use std::borrow::Cow;

use super::plan::{CallPlan, Composite, Fanout, Placement, Stitch};
use super::run::{Outcome, Part, Reason, Slot};
use crate::json::{Key, Kind, Node, ShapeError};

/// The assembled document and what it left out.
#[derive(Debug)]
pub struct Assembled<'a> {
    /// The root object.
    pub root: Node<'a>,
    /// Optional calls left out or incomplete, in config order, with why.
    pub missing: Vec<(usize, Reason)>,
    /// Writes that replaced an earlier call's key.
    pub collisions: u32,
}

/// A required call that could not be shaped: the composition fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeFailure {
    /// The call.
    pub call: usize,
    /// Why.
    pub reason: Reason,
}

/// A fan-out call's results by value, in first-appearance order.
type FanResults<'a> = Vec<(&'a str, Node<'a>)>;

/// Builds the output of `outcome` (which has no failed required call).
pub fn assemble<'a>(
    plan: &'a Composite,
    outcome: &'a Outcome,
) -> Result<Assembled<'a>, ShapeFailure> {
    let mut missing: Vec<(usize, Reason)> = Vec::new();
    let mut fans: Vec<Option<FanResults<'a>>> = Vec::with_capacity(plan.calls.len());
    let mut unusable = vec![false; plan.calls.len()];
    for (i, (call, slot)) in plan.calls.iter().zip(&outcome.slots).enumerate() {
        let results = match (slot, &call.fanout) {
            (Slot::Done(part), Some(fanout)) => match fan_results(call, fanout, part) {
                Ok(Some((results, incomplete))) => {
                    if let Some(reason) = incomplete {
                        fail(call, i, reason, &mut missing)?;
                    }
                    Some(results)
                }
                Ok(None) => None,
                Err(reason) => {
                    fail(call, i, reason, &mut missing)?;
                    unusable[i] = true;
                    None
                }
            },
            _ => None,
        };
        fans.push(results);
    }
    let mut root = Node::Object(Vec::with_capacity(plan.calls.len()));
    let mut collisions = 0;
    for (i, (call, slot)) in plan.calls.iter().zip(&outcome.slots).enumerate() {
        let part = match slot {
            Slot::Done(_) if unusable[i] => continue,
            Slot::Done(part) => part,
            Slot::Failed(reason) => {
                fail(call, i, *reason, &mut missing)?;
                continue;
            }
            Slot::Waiting | Slot::Running => {
                fail(call, i, Reason::Timeout, &mut missing)?;
                continue;
            }
        };
        let node = match call_node(plan, i, part, &fans) {
            Ok(Some(node)) => node,
            Ok(None) => continue,
            Err(reason) => {
                fail(call, i, reason, &mut missing)?;
                continue;
            }
        };
        match place(&mut root, &call.into, node) {
            Ok(n) => collisions += n,
            Err(reason) => fail(call, i, reason, &mut missing)?,
        }
    }
    missing.sort_by_key(|(i, _)| *i);
    missing.dedup_by_key(|(i, _)| *i);
    Ok(Assembled {
        root,
        missing,
        collisions,
    })
}

/// Records an optional call as missing; a required one fails the composition.
fn fail(
    call: &CallPlan,
    i: usize,
    reason: Reason,
    missing: &mut Vec<(usize, Reason)>,
) -> Result<(), ShapeFailure> {
    if call.required {
        return Err(ShapeFailure { call: i, reason });
    }
    missing.push((i, reason));
    Ok(())
}

fn shape_reason(e: ShapeError) -> Reason {
    match e {
        ShapeError::Json(_) => Reason::NotJson,
        ShapeError::TargetMissing(_) | ShapeError::NotAnArray => Reason::Shape,
    }
}

/// The node call `i` contributes, or `None` when it is stitched into another call.
fn call_node<'a>(
    plan: &'a Composite,
    i: usize,
    part: &'a Part,
    fans: &[Option<FanResults<'a>>],
) -> Result<Option<Node<'a>>, Reason> {
    let call = &plan.calls[i];
    if let Some(fanout) = &call.fanout {
        if fanout.stitch.is_some() {
            return Ok(None);
        }
        let results = fans[i].clone().unwrap_or_default();
        let members = results
            .into_iter()
            .map(|(value, node)| (Key::Text(Cow::Borrowed(value)), node))
            .collect();
        return Ok(Some(Node::Object(members)));
    }
    let text = part.text.as_str();
    if call.shape.is_identity() && !call.stitched_into {
        return Ok(Some(Node::Raw(text)));
    }
    let mut node = call.shape.select(Node::new(text)).map_err(shape_reason)?;
    if call.stitched_into {
        for (f, other) in plan.calls.iter().enumerate() {
            let Some(Fanout {
                source,
                stitch: Some(stitch),
                ..
            }) = &other.fanout
            else {
                continue;
            };
            if *source != i {
                continue;
            }
            if let Some(results) = &fans[f] {
                apply_stitch(&mut node, stitch, results).map_err(shape_reason)?;
            }
        }
    }
    call.shape.finish(node).map(Some).map_err(shape_reason)
}

/// Writes each element's result into it (or in its place).
fn apply_stitch<'a>(
    node: &mut Node<'a>,
    stitch: &'a Stitch,
    results: &FanResults<'a>,
) -> Result<(), ShapeError> {
    let find = |raw: &str| {
        let text = Node::scalar_text(raw)?;
        results
            .iter()
            .find(|(v, _)| **v == *text)
            .map(|(_, n)| n.clone())
    };
    node.for_each_mut::<ShapeError>(&stitch.elements, &mut |element| {
        match (&stitch.value_key, &stitch.field) {
            (Some(value_key), Some(field)) => {
                let value = match element.member_mut(value_key)? {
                    Some(Node::Raw(raw)) => find(raw),
                    _ => None,
                };
                if let Some(result) = value {
                    let _ = element.set(Key::Text(Cow::Borrowed(field)), result);
                }
            }
            _ => {
                if let Node::Raw(raw) = element {
                    if let Some(result) = find(raw) {
                        *element = result;
                    }
                }
            }
        }
        Ok(())
    })
}

/// A fan-out call's shaped results by value, and the reason it is incomplete if it is.
#[allow(clippy::type_complexity)]
fn fan_results<'a>(
    call: &'a CallPlan,
    fanout: &'a Fanout,
    part: &'a Part,
) -> Result<Option<(FanResults<'a>, Option<Reason>)>, Reason> {
    let Some(fan) = &part.fan else {
        return Ok(None);
    };
    let mut incomplete = fan.replies.iter().find_map(|r| r.as_ref().err().copied());
    let mut out: FanResults<'a> = Vec::with_capacity(fan.values.len());
    match &fanout.batch {
        None => {
            for (value, reply) in fan.values.iter().zip(&fan.replies) {
                let Ok(answer) = reply else { continue };
                match call.shape.apply(Node::new(&answer.text)) {
                    Ok(node) => out.push((value, node)),
                    Err(e) if call.required => return Err(shape_reason(e)),
                    Err(e) => incomplete = incomplete.or(Some(shape_reason(e))),
                }
            }
        }
        Some(batch) => {
            for reply in &fan.replies {
                let Ok(answer) = reply else { continue };
                let elements = match call.shape.targeted(&answer.text) {
                    Ok(Some(mut node)) => {
                        node.expand().map_err(|_| Reason::NotJson)?;
                        match node {
                            Node::Array(items) => items,
                            _ => return Err(Reason::Shape),
                        }
                    }
                    Ok(None) => return Err(Reason::Shape),
                    Err(_) => return Err(Reason::NotJson),
                };
                for element in elements {
                    let Node::Raw(raw) = element else { continue };
                    let key = Node::collect(raw, batch.key.segments())
                        .map_err(|_| Reason::NotJson)?
                        .first()
                        .and_then(|k| Node::scalar_text(k));
                    let Some(key) = key else { continue };
                    let Some(value) = fan.values.iter().find(|v| ***v == *key) else {
                        continue;
                    };
                    if out.iter().any(|(v, _)| *v == &**value) {
                        continue;
                    }
                    let node = call
                        .shape
                        .filter(Node::Raw(raw))
                        .and_then(|n| call.shape.finish(n))
                        .map_err(shape_reason)?;
                    out.push((value, node));
                }
            }
            // Results in value order, whatever order the backend listed them in.
            out.sort_by_key(|(v, _)| fan.values.iter().position(|x| &**x == *v));
        }
    }
    Ok(Some((out, incomplete)))
}

/// Places `node` in `root`; returns how many existing values it replaced.
fn place<'a>(root: &mut Node<'a>, into: &'a Placement, node: Node<'a>) -> Result<u32, Reason> {
    match into {
        Placement::Stitched => Ok(0),
        Placement::Key(path) => Ok(insert(root, path, node)),
        Placement::Root => {
            let mut node = node;
            node.expand().map_err(|_| Reason::NotJson)?;
            let Node::Object(members) = node else {
                return Err(Reason::Shape);
            };
            let mut replaced = 0;
            for (key, value) in members {
                replaced += u32::from(root.set(key, value).unwrap_or(false));
            }
            Ok(replaced)
        }
    }
}

/// Sets `path` in `root`, creating objects on the way (a non-object in the way is replaced
/// and counted); returns how many values were replaced.
fn insert<'a>(root: &mut Node<'a>, path: &'a [Box<str>], node: Node<'a>) -> u32 {
    let Some((last, init)) = path.split_last() else {
        return 0;
    };
    let mut replaced = 0;
    let mut here = root;
    for key in init {
        let is_object = matches!(
            here.member_mut(key).ok().flatten().map(|n| n.kind()),
            Some(Kind::Object)
        );
        if !is_object {
            let existed = here
                .set(Key::Text(Cow::Borrowed(key)), Node::Object(Vec::new()))
                .unwrap_or(false);
            replaced += u32::from(existed);
        }
        here = match here.member_mut(key) {
            Ok(Some(next)) => next,
            _ => return replaced,
        };
    }
    let existed = here
        .set(Key::Text(Cow::Borrowed(last)), node)
        .unwrap_or(false);
    replaced + u32::from(existed)
}
