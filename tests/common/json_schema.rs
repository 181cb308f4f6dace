//! A validator for the subset of JSON Schema that docs/bench.schema.json uses: type (one or a
//! list), const, enum, required, properties, additionalProperties: false, items, minItems,
//! maxItems, minLength, minimum, maximum, exclusiveMinimum. Keywords it does not know make it
//! fail, so the schema cannot silently grow beyond what is checked.

use serde_json::Value;

const KNOWN: &[&str] = &[
    "$schema", "$id", "title", "description", "type", "const", "enum", "required", "properties", "additionalProperties",
    "items", "minItems", "maxItems", "minLength", "minimum", "maximum", "exclusiveMinimum",
];

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        other => panic!("schema: unknown type {other}"),
    }
}

/// Every violation of `schema` by `doc`, as `path: what`.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, doc, "$", &mut errors);
    errors
}

fn check(s: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let s = s.as_object().expect("schema node is an object");
    for key in s.keys() {
        assert!(KNOWN.contains(&key.as_str()), "schema keyword `{key}` is not supported by this validator");
    }
    let mut fail = |what: String| errors.push(format!("{path}: {what}"));
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(name) => type_matches(name, v),
            Value::Array(names) => names.iter().any(|n| type_matches(n.as_str().unwrap(), v)),
            _ => panic!("schema: bad type"),
        };
        if !ok {
            fail(format!("expected type {t}, got {v}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            fail(format!("expected {c}, got {v}"));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            fail(format!("{v} is not one of {options:?}"));
        }
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if x < min {
                fail(format!("{x} < minimum {min}"));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if x > max {
                fail(format!("{x} > maximum {max}"));
            }
        }
        if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_f64) {
            if x <= min {
                fail(format!("{x} <= exclusiveMinimum {min}"));
            }
        }
    }
    if let (Some(text), Some(min)) = (v.as_str(), s.get("minLength").and_then(Value::as_u64)) {
        if (text.chars().count() as u64) < min {
            fail(format!("string shorter than {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                fail(format!("fewer than {min} items"));
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if (items.len() as u64) > max {
                fail(format!("more than {max} items"));
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    errors.push(format!("{path}: missing required `{r}`"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, value) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(ps) => check(ps, value, &format!("{path}.{key}"), errors),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => errors.push(format!("{path}: unexpected property `{key}`")),
                None => {}
            }
        }
    }
}
