//! Request parts as JSON instances: the query string, headers, cookies and path parameters
//! each become one object, with values typed by what the schema declares for them (`?limit=10`
//! is the integer 10 where `limit` is an integer, the string "10" elsewhere), so that a
//! schema written for JSON reads naturally on text parameters.
//!
//! Building an instance is the parse the check needs: it allocates the object and its
//! decoded strings, per request, only on routes with a `validate` policy for that part.

use serde_json::{Map, Number, Value};

/// How one parameter's text becomes JSON, read from its schema's `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A string (or a type that cannot be read from text).
    Text,
    /// `integer`.
    Integer,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// `array`: repeated (`explode`) or comma-separated values of `items`.
    Array {
        /// The items' kind.
        items: Box<Kind>,
        /// Repeated parameters (`a=1&a=2`) rather than one comma-separated value.
        explode: bool,
    },
}

impl Kind {
    /// The kind `schema` declares, following local `$ref`s into `root`.
    pub fn of(schema: &Value, root: &Value, explode: bool) -> Kind {
        let schema = resolve(schema, root);
        let declared = match schema.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null"),
            _ => None,
        };
        match declared {
            Some("integer") => Kind::Integer,
            Some("number") => Kind::Number,
            Some("boolean") => Kind::Boolean,
            Some("array") => {
                let items = schema
                    .get("items")
                    .map_or(Kind::Text, |items| Kind::of(items, root, false));
                Kind::Array {
                    items: Box::new(items),
                    explode,
                }
            }
            _ => Kind::Text,
        }
    }

    /// The JSON value of one parameter's `values` (several when it was repeated).
    fn value(&self, values: Vec<String>) -> Value {
        match self {
            Kind::Array { items, explode } => {
                let parts: Vec<Value> = if *explode {
                    values.into_iter().map(|v| items.scalar(v)).collect()
                } else {
                    values
                        .iter()
                        .flat_map(|v| v.split(','))
                        .map(|v| items.scalar(v.trim().to_string()))
                        .collect()
                };
                Value::Array(parts)
            }
            _ if values.len() == 1 => {
                let mut values = values;
                self.scalar(values.pop().unwrap_or_default())
            }
            _ => Value::Array(values.into_iter().map(|v| self.scalar(v)).collect()),
        }
    }

    /// One text value; text that does not read as the declared type stays a string, so the
    /// schema reports the mismatch.
    fn scalar(&self, text: String) -> Value {
        match self {
            Kind::Integer => match text.parse::<i64>() {
                Ok(n) => Value::Number(n.into()),
                Err(_) => Value::String(text),
            },
            Kind::Number => match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => Value::String(text),
            },
            Kind::Boolean => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            },
            Kind::Text | Kind::Array { .. } => Value::String(text),
        }
    }
}

/// `schema`, or what its local `$ref` chain points to in `root` (a few hops at most).
fn resolve<'v>(mut schema: &'v Value, root: &'v Value) -> &'v Value {
    for _ in 0..8 {
        let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
        else {
            break;
        };
        schema = target;
    }
    schema
}

/// The named parameters of one request part and how each reads.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// `(name, kind)`; header names lower-case.
    pub named: Vec<(String, Kind)>,
    /// Whether parameters the schema does not name are put in the instance too (query
    /// strings: so that `additionalProperties: false` can refuse them). Headers never: a
    /// request carries many a schema has no business with.
    pub include_unnamed: bool,
}

impl Fields {
    /// The fields a JSON Schema for a whole part names: its top-level `properties`.
    pub fn from_object_schema(schema: &Value, include_unnamed: bool, lower_case: bool) -> Self {
        let schema = resolve(schema, schema);
        let named = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, s)| {
                let name = if lower_case {
                    name.to_ascii_lowercase()
                } else {
                    name.clone()
                };
                (name, Kind::of(s, schema, true))
            })
            .collect();
        Fields {
            named,
            include_unnamed,
        }
    }

    fn kind(&self, name: &str) -> Option<&Kind> {
        self.named.iter().find(|(n, _)| n == name).map(|(_, k)| k)
    }

    /// The object of `pairs` (decoded names and values, in request order).
    pub fn instance(&self, pairs: impl Iterator<Item = (String, String)>) -> Value {
        let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in pairs {
            if !self.include_unnamed && self.kind(&name).is_none() {
                continue;
            }
            match grouped.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value),
                None => grouped.push((name, vec![value])),
            }
        }
        let mut object = Map::new();
        for (name, values) in grouped {
            let value = self.kind(&name).unwrap_or(&Kind::Text).value(values);
            object.insert(name, value);
        }
        Value::Object(object)
    }
}

/// The decoded `name=value` pairs of a query string (`+` is a space, `%XX` a byte).
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            (form_decode(name), form_decode(value))
        })
}

/// The `name=value` pairs of `Cookie` field values.
pub fn cookie_pairs<'a>(
    values: impl Iterator<Item = &'a [u8]> + 'a,
) -> impl Iterator<Item = (String, String)> + 'a {
    values
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let text = |b: &[u8]| String::from_utf8_lossy(b.trim_ascii()).into_owned();
            Some((text(&pair[..eq]), text(&pair[eq + 1..])))
        })
}

/// Decodes `application/x-www-form-urlencoded` text; invalid escapes stay as written and
/// bytes that are not UTF-8 become U+FFFD.
pub fn form_decode(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => match (text.get(i + 1).and_then(hex), text.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Decodes a path segment (`%XX` only; `+` stays).
pub fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    form_decode(text.replace('+', "%2B").as_bytes())
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_are_typed_by_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer" },
                "ratio": { "type": ["number", "null"] },
                "on": { "type": "boolean" },
                "tags": { "type": "array", "items": { "type": "integer" } },
                "name": { "type": "string" }
            }
        });
        let fields = Fields::from_object_schema(&schema, true, false);
        let instance = fields.instance(query_pairs(
            b"limit=10&ratio=0.5&on=true&tags=1&tags=2&name=a+b%21&extra=x&limit2=&name2",
        ));
        assert_eq!(
            instance,
            json!({
                "limit": 10, "ratio": 0.5, "on": true, "tags": [1, 2], "name": "a b!",
                "extra": "x", "limit2": "", "name2": ""
            })
        );
    }

    #[test]
    fn text_that_is_not_the_declared_type_stays_text() {
        let fields = Fields::from_object_schema(
            &json!({ "properties": { "limit": { "type": "integer" } } }),
            true,
            false,
        );
        assert_eq!(
            fields.instance(query_pairs(b"limit=ten")),
            json!({ "limit": "ten" })
        );
        // A repeated scalar becomes an array, which its schema then refuses.
        assert_eq!(
            fields.instance(query_pairs(b"limit=1&limit=2")),
            json!({ "limit": [1, 2] })
        );
    }

    #[test]
    fn unexploded_arrays_split_on_commas_and_unnamed_headers_are_left_out() {
        let fields = Fields {
            named: vec![(
                "x-ids".into(),
                Kind::Array {
                    items: Box::new(Kind::Integer),
                    explode: false,
                },
            )],
            include_unnamed: false,
        };
        let pairs = [("x-ids", "1, 2"), ("user-agent", "t")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(fields.instance(pairs), json!({ "x-ids": [1, 2] }));
    }

    #[test]
    fn cookies_and_escapes_decode() {
        let pairs: Vec<_> = cookie_pairs([&b"a=1; b = two"[..], b"c=3"].into_iter()).collect();
        assert_eq!(
            pairs,
            [("a", "1"), ("b", "two"), ("c", "3")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
        assert_eq!(form_decode(b"%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
    }
}
