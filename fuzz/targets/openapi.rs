//! OpenAPI documents as `validate` policies read them (`openapi_file` + `operation`): JSON or
//! YAML text to a document, every operation's contract, and its schemas made standalone and
//! compiled.
//!
//! No panic, and no hang: `$ref` chains end (cycles are an error), and a schema that
//! compiles is used on the instances a request could bring. An operation found by its
//! `operationId` is found again by `METHOD /path` from its label.

use ringgate::openapi::document::{parse, Document, METHODS};
use ringgate::policy::validate::{Fields, Schema};
use serde_json::Value;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(root) = parse(text) else {
        return;
    };
    let Ok(doc) = Document::from_value(root) else {
        return;
    };
    for wanted in operations(&doc) {
        let Ok(op) = doc.operation(&wanted) else {
            continue;
        };
        assert!(op.label.contains(' '), "label {:?}", op.label);
        assert!(
            doc.operation(&op.label).is_ok(),
            "{wanted} found, its label {} not",
            op.label
        );
        let draft = doc.v30.then_some(jsonschema::Draft::Draft4);
        for p in &op.parameters {
            let schema = doc.standalone_schema(&p.schema);
            if let Ok(compiled) = Schema::compile(&schema, draft) {
                let _ = compiled.is_valid(&Value::String("1".into()));
            }
            assert!(matches!(
                p.location.as_str(),
                "query" | "header" | "path" | "cookie"
            ));
        }
        if let Some((schema, _)) = op.body.as_ref().and_then(|b| b.json_schema.as_ref()) {
            let schema = doc.standalone_schema(schema);
            let _ = Fields::from_object_schema(&schema, true, false);
            if let Ok(compiled) = Schema::compile(&schema, draft) {
                let _ = compiled.is_valid(&serde_json::json!({"a": 1, "b": [true, null]}));
            }
        }
    }
}

/// The operationIds in the document and a few `METHOD /path` names.
fn operations(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths.iter().take(8) {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            out.push(format!("{} {path}", method.to_ascii_uppercase()));
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                out.push(id.to_string());
            }
        }
    }
    out
}
