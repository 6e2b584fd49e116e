//! The contract the validation allocation test (`tests/validation_alloc.rs`) and the
//! validation bench (`benches/validate.rs`) share: a typical JSON Schema and a passing body of
//! about 500 bytes.

/// A typical contract: required fields, formats (uuid, email, date-time), bounds, enums,
/// patterns, nested objects and arrays.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["id", "name", "email", "address"],
  "additionalProperties": false,
  "properties": {
    "id": { "type": "string", "format": "uuid" },
    "name": { "type": "string", "minLength": 1, "maxLength": 100 },
    "email": { "type": "string", "format": "email" },
    "age": { "type": "integer", "minimum": 0, "maximum": 150 },
    "active": { "type": "boolean" },
    "created": { "type": "string", "format": "date-time" },
    "tags": { "type": "array", "items": { "type": "string", "maxLength": 20 }, "maxItems": 10, "uniqueItems": true },
    "address": {
      "type": "object",
      "required": ["street", "city", "zip"],
      "properties": {
        "street": { "type": "string" },
        "city": { "type": "string" },
        "zip": { "type": "string", "pattern": "^[0-9]{5}$" },
        "country": { "enum": ["US", "CA", "DE", "FR"] }
      }
    },
    "phones": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["kind", "number"],
        "properties": {
          "kind": { "enum": ["home", "work", "mobile"] },
          "number": { "type": "string", "pattern": "^\\+[0-9-]+$" }
        }
      }
    },
    "preferences": { "type": "object", "additionalProperties": { "type": ["string", "boolean"] } },
    "notes": { "type": "string", "maxLength": 500 }
  }
}"#;

/// A passing body of about 500 bytes.
pub const BODY: &str = r#"{"id":"3fa85f64-5717-4562-b3fc-2c963f66afa6","name":"Ann Example","email":"ann@example.com","age":34,"active":true,"created":"2026-12-03T12:00:00Z","tags":["admin","beta","eu"],"address":{"street":"1 Main Street","city":"Springfield","zip":"12345","country":"US"},"phones":[{"kind":"home","number":"+1-555-0100"},{"kind":"work","number":"+1-555-0199"}],"preferences":{"newsletter":false,"language":"en-US","timezone":"Europe/Berlin"},"notes":"Prefers e-mail; call only on weekdays between nine and five."}"#;
