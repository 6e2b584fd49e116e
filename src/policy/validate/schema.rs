//! One compiled JSON Schema and how its failures become [`Violation`]s.
//!
//! Compiled once per snapshot, with format assertions on (`email`, `uuid`, `date-time`, ...;
//! unknown formats such as OpenAPI's `int32` are ignored) and the linear-time `regex`
//! engine for `pattern` (request data is untrusted; a backtracking engine could be made to
//! spin). No remote references: the build has no HTTP client and no file retriever, so a
//! `$ref` outside the schema is a compile error.

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::Value;

use crate::http::problem::Violation;

/// Most violations listed in one answer (the rest are counted in `detail`).
pub const MAX_VIOLATIONS: usize = 20;

/// A compiled schema.
#[derive(Debug)]
pub struct Schema {
    validator: Validator,
}

impl Schema {
    /// Compiles `schema` (a 2020-12 schema unless it says otherwise with `$schema`, or
    /// `draft` when given). The error names the failing location inside the schema as a
    /// JSON pointer.
    pub fn compile(schema: &Value, draft: Option<Draft>) -> Result<Self, String> {
        let mut options = jsonschema::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .with_pattern_options(PatternOptions::regex());
        if let Some(draft) = draft {
            options = options.with_draft(draft);
        }
        let validator = options.build(schema).map_err(|e| {
            let at = e.instance_path().as_str();
            let at = if at.is_empty() { "/" } else { at };
            format!("invalid schema at {at}: {e}")
        })?;
        Ok(Schema { validator })
    }

    /// Whether `instance` conforms (no allocation for a passing instance).
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Appends `instance`'s violations as found in `location` (`body`, `query`, ...), up
    /// to [`MAX_VIOLATIONS`] in all.
    pub fn violations(&self, instance: &Value, location: &'static str, out: &mut Vec<Violation>) {
        for error in self.validator.iter_errors(instance) {
            if out.len() >= MAX_VIOLATIONS {
                return;
            }
            out.push(Violation {
                location,
                pointer: error.instance_path().as_str().to_string(),
                detail: error.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_violation_with_its_pointer() {
        let schema = Schema::compile(
            &json!({
                "type": "object",
                "properties": {
                    "age": { "type": "integer", "minimum": 0 },
                    "email": { "type": "string", "format": "email" }
                },
                "required": ["age"],
                "additionalProperties": false
            }),
            None,
        )
        .expect("compiles");
        assert!(schema.is_valid(&json!({ "age": 3, "email": "a@example.com" })));
        let mut out = Vec::new();
        schema.violations(
            &json!({ "age": -1, "email": "nope", "x": 1 }),
            "body",
            &mut out,
        );
        let mut pointers: Vec<&str> = out.iter().map(|v| v.pointer.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(pointers, ["", "/age", "/email"]);
        assert!(out.iter().all(|v| v.location == "body"));
    }

    #[test]
    fn a_bad_schema_names_its_location() {
        let err = Schema::compile(
            &json!({ "type": "object", "properties": { "age": { "minimum": "zero" } } }),
            None,
        )
        .expect_err("invalid");
        assert!(err.contains("/properties/age/minimum"), "{err}");
    }

    #[test]
    fn backtracking_patterns_are_refused_at_compile_time() {
        // Look-around needs a backtracking engine; the linear-time one refuses it.
        let err = Schema::compile(&json!({ "type": "string", "pattern": "(?=a)a" }), None)
            .expect_err("look-ahead");
        assert!(err.contains("invalid schema"), "{err}");
    }

    #[test]
    fn the_list_is_bounded() {
        let schema = Schema::compile(
            &json!({ "type": "array", "items": { "type": "string" } }),
            None,
        )
        .expect("compiles");
        let mut out = Vec::new();
        schema.violations(&json!(vec![1; 100]), "body", &mut out);
        assert_eq!(out.len(), MAX_VIOLATIONS);
    }
}
