//! A small JSON Schema validator for the OpenAPI 3.0 schemas in GitHub's REST description.
//!
//! It covers every keyword that occurs in `tests/fixtures/github/openapi-subset.json`
//! (request bodies, parameters and 2xx response schemas), plus the other common
//! value-constraining keywords, so that a schema is never silently half-checked.
//!
//! Assertions implemented:
//! - `type` (a string or an array of strings; `integer` accepts `3` and `3.0`),
//!   OpenAPI `nullable: true` (allows `null` whatever `type`/`enum` say),
//! - `enum`, `const`,
//! - strings: `minLength`, `maxLength` (counted in Unicode scalar values), `pattern`,
//!   `format` for `date-time` (RFC 3339), `date`, `uri` (an absolute URI, or `""`, which
//!   GitHub itself sends for unset URLs), `int32`, `int64`
//!   (range checks on integers); other formats are annotations, as JSON Schema allows,
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum` and `exclusiveMaximum` (both the
//!   OpenAPI 3.0 boolean form and the numeric form), `multipleOf`,
//! - arrays: `items` (one schema, or an array of schemas for tuples), `additionalItems`,
//!   `minItems`, `maxItems`, `uniqueItems`,
//! - objects: `properties`, `required`, `additionalProperties` (boolean or schema),
//!   `patternProperties`, `minProperties`, `maxProperties`, `propertyNames`,
//! - combinators: `allOf`, `anyOf`, `oneOf` (exactly one), `not`.
//!
//! Deliberately ignored annotation keywords (they do not constrain values): `description`,
//! `title`, `example`, `examples`, `default`, `deprecated`, `readOnly`, `writeOnly`,
//! `externalDocs`, `xml`, `$comment`, `$schema`, `$id`, every `x-*` extension, and
//! `discriminator` (in OpenAPI a hint for `oneOf`; the `oneOf` itself is still checked).
//!
//! Any other keyword (for example `$ref`, `if`, `dependencies`) is reported as an error
//! ("unsupported schema keyword") instead of being ignored.
//!
//! Errors name the JSON pointer of the offending value (`(root)` for the document itself).

use serde_json::{Map, Value};

/// Options for [`validate_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Treat an object schema that lists `properties` but says nothing about
    /// `additionalProperties`/`patternProperties` as closed: unlisted properties are errors.
    /// Standard JSON Schema (and GitHub) allow them; this pedantic mode catches misspelt
    /// field names that GitHub would silently ignore. It applies to the schema objects met
    /// directly along `properties`/`items`/`additionalProperties`, not inside
    /// `allOf`/`anyOf`/`oneOf`/`not` branches (a branch only sees part of the object).
    pub deny_unlisted_properties: bool,
}

/// Validates `value` against `schema` (standard semantics, see the module docs).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    validate_with(schema, value, Options::default())
}

/// Validates `value` against `schema` with `options`.
pub fn validate_with(schema: &Value, value: &Value, options: Options) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check(schema, value, "", options, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "externalDocs",
    "xml",
    "$comment",
    "$schema",
    "$id",
    "discriminator",
    "nullable",
];

const ASSERTIONS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn child(ptr: &str, token: &str) -> String {
    format!("{ptr}/{}", escape_pointer_token(token))
}

fn at(ptr: &str) -> &str {
    if ptr.is_empty() {
        "(root)"
    } else {
        ptr
    }
}

fn push(errors: &mut Vec<String>, ptr: &str, msg: impl std::fmt::Display) {
    errors.push(format!("{}: {msg}", at(ptr)));
}

/// The JSON type name of a value, as JSON Schema spells it (`integer` for integral numbers).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.as_number().is_some_and(is_integer),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn as_count(schema_value: &Value) -> Option<u64> {
    schema_value.as_u64()
}

fn check(schema: &Value, value: &Value, ptr: &str, opts: Options, errors: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            push(errors, ptr, "no value is allowed here (schema is `false`)");
            return;
        }
        Value::Object(obj) => obj,
        other => {
            push(
                errors,
                ptr,
                format!(
                    "invalid schema (not an object or boolean): {}",
                    short(other)
                ),
            );
            return;
        }
    };

    for key in obj.keys() {
        if !ASSERTIONS.contains(&key.as_str())
            && !ANNOTATIONS.contains(&key.as_str())
            && !key.starts_with("x-")
        {
            push(
                errors,
                ptr,
                format!("unsupported schema keyword `{key}` (the validator does not check it)"),
            );
        }
    }

    if value.is_null() && obj.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }

    if let Some(ty) = obj.get("type") {
        let allowed: Vec<&str> = match ty {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if allowed.is_empty() {
            push(
                errors,
                ptr,
                format!("invalid `type` in schema: {}", short(ty)),
            );
            return;
        }
        if !allowed.iter().any(|t| has_type(value, t)) {
            push(
                errors,
                ptr,
                format!(
                    "expected {}, found {} {}",
                    allowed.join(" or "),
                    type_name(value),
                    short(value)
                ),
            );
            // Further keywords would only repeat the same complaint.
            return;
        }
    }

    if let Some(options) = obj.get("enum") {
        match options.as_array() {
            Some(options) if options.iter().any(|o| json_eq(o, value)) => {}
            Some(options) => {
                let list: Vec<String> = options.iter().map(short).collect();
                push(
                    errors,
                    ptr,
                    format!("{} is not one of [{}]", short(value), list.join(", ")),
                );
            }
            None => push(errors, ptr, "invalid `enum` in schema (not an array)"),
        }
    }
    if let Some(c) = obj.get("const") {
        if !json_eq(c, value) {
            push(
                errors,
                ptr,
                format!("{} is not the constant {}", short(value), short(c)),
            );
        }
    }

    match value {
        Value::String(s) => check_string(obj, s, ptr, errors),
        Value::Number(n) => check_number(obj, n, ptr, errors),
        Value::Array(items) => check_array(obj, items, ptr, opts, errors),
        Value::Object(map) => check_object(obj, map, ptr, opts, errors),
        _ => {}
    }

    check_combinators(obj, value, ptr, errors);
}

fn check_string(obj: &Map<String, Value>, s: &str, ptr: &str, errors: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if let Some(max) = obj.get("maxLength").and_then(as_count) {
        if len > max {
            push(
                errors,
                ptr,
                format!("string is too long ({len} characters, maximum is {max})"),
            );
        }
    }
    if let Some(min) = obj.get("minLength").and_then(as_count) {
        if len < min {
            push(
                errors,
                ptr,
                format!("string is too short ({len} characters, minimum is {min})"),
            );
        }
    }
    if let Some(pattern) = obj.get("pattern") {
        match pattern.as_str().map(regex::Regex::new) {
            Some(Ok(re)) => {
                if !re.is_match(s) {
                    push(
                        errors,
                        ptr,
                        format!("{:?} does not match the pattern {:?}", s, re.as_str()),
                    );
                }
            }
            _ => push(
                errors,
                ptr,
                format!("invalid `pattern` in schema: {}", short(pattern)),
            ),
        }
    }
    if let Some(format) = obj.get("format").and_then(Value::as_str) {
        let ok = match format {
            "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            // GitHub answers `""` for unset URLs under `format: uri` (deployment statuses'
            // `target_url`, `log_url`, `environment_url`), so the empty string is accepted.
            "uri" => s.is_empty() || url::Url::parse(s).is_ok(),
            _ => true,
        };
        if !ok {
            push(errors, ptr, format!("{s:?} is not a valid {format}"));
        }
    }
}

fn check_number(
    obj: &Map<String, Value>,
    n: &serde_json::Number,
    ptr: &str,
    errors: &mut Vec<String>,
) {
    let Some(x) = n.as_f64() else { return };
    if let Some(format) = obj.get("format").and_then(Value::as_str) {
        let in_range = match format {
            "int32" => n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()),
            "int64" => {
                n.as_i64().is_some()
                    || (is_integer(n) && x >= i64::MIN as f64 && x < i64::MAX as f64)
            }
            _ => true,
        };
        if !in_range {
            push(errors, ptr, format!("{n} is out of range for {format}"));
        }
    }
    let exclusive_min_flag = obj.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
    let exclusive_max_flag = obj.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
    if let Some(min) = obj.get("minimum").and_then(Value::as_f64) {
        if exclusive_min_flag && x <= min {
            push(errors, ptr, format!("{n} must be greater than {min}"));
        } else if x < min {
            push(errors, ptr, format!("{n} is less than the minimum {min}"));
        }
    }
    if let Some(max) = obj.get("maximum").and_then(Value::as_f64) {
        if exclusive_max_flag && x >= max {
            push(errors, ptr, format!("{n} must be less than {max}"));
        } else if x > max {
            push(
                errors,
                ptr,
                format!("{n} is greater than the maximum {max}"),
            );
        }
    }
    if let Some(min) = obj.get("exclusiveMinimum").and_then(Value::as_f64) {
        if x <= min {
            push(errors, ptr, format!("{n} must be greater than {min}"));
        }
    }
    if let Some(max) = obj.get("exclusiveMaximum").and_then(Value::as_f64) {
        if x >= max {
            push(errors, ptr, format!("{n} must be less than {max}"));
        }
    }
    if let Some(m) = obj.get("multipleOf").and_then(Value::as_f64) {
        if m > 0.0 {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                push(errors, ptr, format!("{n} is not a multiple of {m}"));
            }
        } else {
            push(errors, ptr, "invalid `multipleOf` in schema (must be > 0)");
        }
    }
}

fn check_array(
    obj: &Map<String, Value>,
    items: &[Value],
    ptr: &str,
    opts: Options,
    errors: &mut Vec<String>,
) {
    let len = items.len() as u64;
    if let Some(max) = obj.get("maxItems").and_then(as_count) {
        if len > max {
            push(
                errors,
                ptr,
                format!("array has {len} items, maximum is {max}"),
            );
        }
    }
    if let Some(min) = obj.get("minItems").and_then(as_count) {
        if len < min {
            push(
                errors,
                ptr,
                format!("array has {len} items, minimum is {min}"),
            );
        }
    }
    if obj.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        'outer: for (i, a) in items.iter().enumerate() {
            for (j, b) in items.iter().enumerate().skip(i + 1) {
                if json_eq(a, b) {
                    push(
                        errors,
                        ptr,
                        format!("items {i} and {j} are equal but items must be unique"),
                    );
                    break 'outer;
                }
            }
        }
    }
    match obj.get("items") {
        Some(Value::Array(tuple)) => {
            for (i, item) in items.iter().enumerate() {
                let p = child(ptr, &i.to_string());
                match tuple.get(i) {
                    Some(s) => check(s, item, &p, opts, errors),
                    None => {
                        if let Some(extra) = obj.get("additionalItems") {
                            check(extra, item, &p, opts, errors);
                        }
                    }
                }
            }
        }
        Some(schema) => {
            for (i, item) in items.iter().enumerate() {
                check(schema, item, &child(ptr, &i.to_string()), opts, errors);
            }
        }
        None => {}
    }
}

fn check_object(
    obj: &Map<String, Value>,
    map: &Map<String, Value>,
    ptr: &str,
    opts: Options,
    errors: &mut Vec<String>,
) {
    let count = map.len() as u64;
    if let Some(names) = obj.get("propertyNames") {
        for key in map.keys() {
            let mut key_errors = Vec::new();
            check(
                names,
                &Value::String(key.clone()),
                "",
                opts,
                &mut key_errors,
            );
            if !key_errors.is_empty() {
                push(
                    errors,
                    ptr,
                    format!(
                        "property name {key:?} is not allowed: {}",
                        key_errors.join("; ")
                    ),
                );
            }
        }
    }
    if let Some(max) = obj.get("maxProperties").and_then(as_count) {
        if count > max {
            push(
                errors,
                ptr,
                format!("object has {count} properties, maximum is {max}"),
            );
        }
    }
    if let Some(min) = obj.get("minProperties").and_then(as_count) {
        if count < min {
            push(
                errors,
                ptr,
                format!("object has {count} properties, minimum is {min}"),
            );
        }
    }
    if let Some(required) = obj.get("required") {
        match required.as_array() {
            Some(required) => {
                for name in required {
                    match name.as_str() {
                        Some(name) if !map.contains_key(name) => {
                            push(errors, ptr, format!("missing required property {name:?}"));
                        }
                        Some(_) => {}
                        None => push(errors, ptr, "invalid `required` entry in schema"),
                    }
                }
            }
            None => push(errors, ptr, "invalid `required` in schema (not an array)"),
        }
    }

    let properties = obj.get("properties").and_then(Value::as_object);
    let mut patterns = Vec::new();
    if let Some(pp) = obj.get("patternProperties") {
        match pp.as_object() {
            Some(pp) => {
                for (pattern, schema) in pp {
                    match regex::Regex::new(pattern) {
                        Ok(re) => patterns.push((re, schema)),
                        Err(_) => push(
                            errors,
                            ptr,
                            format!("invalid patternProperties pattern {pattern:?} in schema"),
                        ),
                    }
                }
            }
            None => push(errors, ptr, "invalid `patternProperties` in schema"),
        }
    }
    let additional = obj.get("additionalProperties");
    let closed_by_option = opts.deny_unlisted_properties
        && properties.is_some()
        && additional.is_none()
        && obj.get("patternProperties").is_none();

    for (key, v) in map {
        let p = child(ptr, key);
        let mut matched = false;
        if let Some(schema) = properties.and_then(|props| props.get(key)) {
            matched = true;
            check(schema, v, &p, opts, errors);
        }
        for (re, schema) in &patterns {
            if re.is_match(key) {
                matched = true;
                check(schema, v, &p, opts, errors);
            }
        }
        if matched {
            continue;
        }
        if let Some(schema) = additional {
            match schema {
                Value::Bool(false) => push(
                    errors,
                    &p,
                    format!("unknown property {key:?} (additionalProperties is false)"),
                ),
                other => check(other, v, &p, opts, errors),
            }
        } else if closed_by_option {
            let listed: Vec<&str> = properties
                .map(|props| props.keys().map(String::as_str).collect())
                .unwrap_or_default();
            push(
                errors,
                &p,
                format!(
                    "unknown property {key:?} (the schema lists only: {}; GitHub would ignore it silently)",
                    listed.join(", ")
                ),
            );
        }
    }
}

fn check_combinators(obj: &Map<String, Value>, value: &Value, ptr: &str, errors: &mut Vec<String>) {
    // A branch sees only part of the object, so the pedantic closed-object rule is off.
    let branch_opts = Options {
        deny_unlisted_properties: false,
    };
    let run = |schema: &Value| -> Vec<String> {
        let mut errs = Vec::new();
        check(schema, value, ptr, branch_opts, &mut errs);
        errs
    };
    let summary = |results: &[Vec<String>]| -> String {
        results
            .iter()
            .enumerate()
            .map(|(i, errs)| {
                let shown: Vec<&str> = errs.iter().take(3).map(String::as_str).collect();
                let more = if errs.len() > 3 {
                    format!(" (+{} more)", errs.len() - 3)
                } else {
                    String::new()
                };
                format!("alternative {i}: {}{more}", shown.join("; "))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };

    if let Some(all) = obj.get("allOf") {
        match all.as_array() {
            Some(all) => {
                for schema in all {
                    let mut errs = Vec::new();
                    check(schema, value, ptr, branch_opts, &mut errs);
                    errors.extend(errs);
                }
            }
            None => push(errors, ptr, "invalid `allOf` in schema"),
        }
    }
    if let Some(any) = obj.get("anyOf") {
        match any.as_array() {
            Some(any) => {
                let results: Vec<Vec<String>> = any.iter().map(run).collect();
                if !results.iter().any(Vec::is_empty) {
                    push(
                        errors,
                        ptr,
                        format!(
                            "matches none of the anyOf alternatives ({})",
                            summary(&results)
                        ),
                    );
                }
            }
            None => push(errors, ptr, "invalid `anyOf` in schema"),
        }
    }
    if let Some(one) = obj.get("oneOf") {
        match one.as_array() {
            Some(one) => {
                let results: Vec<Vec<String>> = one.iter().map(run).collect();
                let matching: Vec<usize> = results
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.is_empty())
                    .map(|(i, _)| i)
                    .collect();
                match matching.len() {
                    1 => {}
                    0 => push(
                        errors,
                        ptr,
                        format!(
                            "matches none of the oneOf alternatives ({})",
                            summary(&results)
                        ),
                    ),
                    _ => push(
                        errors,
                        ptr,
                        format!(
                            "matches more than one oneOf alternative (alternatives {:?})",
                            matching
                        ),
                    ),
                }
            }
            None => push(errors, ptr, "invalid `oneOf` in schema"),
        }
    }
    if let Some(not) = obj.get("not") {
        if run(not).is_empty() {
            push(errors, ptr, "matches the schema under `not`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(schema: Value, value: Value) -> Vec<String> {
        match validate(&schema, &value) {
            Ok(()) => Vec::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn property_names_are_checked_as_strings() {
        let s =
            json!({"type": "object", "propertyNames": {"type": "string", "pattern": "^[a-z]+$"}});
        assert!(errs(s.clone(), json!({"abc": 1})).is_empty());
        let e = errs(s, json!({"abc": 1, "A-1": 2}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("A-1"), "{e:?}");
    }

    #[test]
    fn types_and_nullable() {
        assert!(errs(json!({"type": "string"}), json!("x")).is_empty());
        let e = errs(json!({"type": "string"}), json!(3));
        assert_eq!(e, vec!["(root): expected string, found integer 3"]);
        assert!(errs(json!({"type": "integer"}), json!(3.0)).is_empty());
        assert!(!errs(json!({"type": "integer"}), json!(3.5)).is_empty());
        assert!(errs(json!({"type": "number"}), json!(3)).is_empty());
        assert!(errs(json!({"type": ["string", "null"]}), json!(null)).is_empty());
        assert!(!errs(json!({"type": "string"}), json!(null)).is_empty());
        assert!(errs(json!({"type": "string", "nullable": true}), json!(null)).is_empty());
        assert!(errs(
            json!({"type": "string", "nullable": true, "enum": ["a"]}),
            json!(null)
        )
        .is_empty());
        assert!(!errs(json!({"type": "boolean"}), json!("true")).is_empty());
    }

    #[test]
    fn enum_and_const() {
        let s = json!({"type": "string", "enum": ["error", "failure", "pending", "success"]});
        assert!(errs(s.clone(), json!("success")).is_empty());
        let e = errs(s, json!("ok"));
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("\"ok\" is not one of"), "{e:?}");
        assert!(errs(json!({"enum": [1]}), json!(1.0)).is_empty());
        assert!(!errs(json!({"const": "a"}), json!("b")).is_empty());
    }

    #[test]
    fn objects_report_pointer_paths() {
        let s = json!({
            "type": "object",
            "required": ["state"],
            "properties": {
                "state": {"type": "string"},
                "output": {"type": "object", "properties": {"a/b": {"type": "integer"}},
                           "additionalProperties": false}
            }
        });
        let e = errs(s.clone(), json!({"output": {"a/b": "x", "zz": 1}}));
        assert!(
            e.contains(&"(root): missing required property \"state\"".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("/output/a~1b: expected integer")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("/output/zz: unknown property")),
            "{e:?}"
        );
        // Unlisted properties are allowed by default...
        assert!(errs(s.clone(), json!({"state": "x", "extra": 1})).is_empty());
        // ...and rejected in the pedantic mode.
        let opts = Options {
            deny_unlisted_properties: true,
        };
        let e = validate_with(&s, &json!({"state": "x", "extra": 1}), opts).unwrap_err();
        assert!(e[0].starts_with("/extra: unknown property"), "{e:?}");
        // additionalProperties as a schema.
        let m = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert!(errs(m.clone(), json!({"a": "b"})).is_empty());
        assert!(!errs(m, json!({"a": 1})).is_empty());
        let pp = json!({"patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": false});
        assert!(errs(pp.clone(), json!({"x-a": 1})).is_empty());
        assert!(!errs(pp.clone(), json!({"x-a": "1"})).is_empty());
        assert!(!errs(pp, json!({"y": 1})).is_empty());
        assert!(!errs(json!({"minProperties": 1}), json!({})).is_empty());
        assert!(!errs(json!({"maxProperties": 1}), json!({"a": 1, "b": 2})).is_empty());
    }

    #[test]
    fn strings_and_formats() {
        assert!(!errs(json!({"type": "string", "maxLength": 3}), json!("abcd")).is_empty());
        // Lengths count characters, not bytes.
        assert!(errs(json!({"type": "string", "maxLength": 3}), json!("ééé")).is_empty());
        assert!(!errs(json!({"type": "string", "minLength": 2}), json!("a")).is_empty());
        assert!(errs(json!({"pattern": "^[a-z]+$"}), json!("abc")).is_empty());
        assert!(!errs(json!({"pattern": "^[a-z]+$"}), json!("ab1")).is_empty());
        let dt = json!({"type": "string", "format": "date-time"});
        assert!(errs(dt.clone(), json!("2018-05-04T01:14:52Z")).is_empty());
        assert!(!errs(dt, json!("yesterday")).is_empty());
        let uri = json!({"type": "string", "format": "uri"});
        assert!(errs(uri.clone(), json!("https://example.com/x")).is_empty());
        assert!(!errs(uri, json!("not a uri")).is_empty());
        assert!(errs(json!({"format": "email"}), json!("anything")).is_empty());
    }

    #[test]
    fn numbers() {
        let s = json!({"type": "integer", "minimum": 1, "maximum": 10});
        assert!(errs(s.clone(), json!(1)).is_empty());
        assert!(!errs(s.clone(), json!(0)).is_empty());
        assert!(!errs(s, json!(11)).is_empty());
        assert!(!errs(json!({"minimum": 1, "exclusiveMinimum": true}), json!(1)).is_empty());
        assert!(!errs(json!({"exclusiveMaximum": 5}), json!(5)).is_empty());
        assert!(!errs(json!({"multipleOf": 2}), json!(3)).is_empty());
        assert!(!errs(
            json!({"type": "integer", "format": "int32"}),
            json!(1u64 << 40)
        )
        .is_empty());
        assert!(errs(
            json!({"type": "integer", "format": "int64"}),
            json!(1u64 << 40)
        )
        .is_empty());
        assert!(!errs(
            json!({"type": "integer", "format": "int64"}),
            json!(u64::MAX)
        )
        .is_empty());
    }

    #[test]
    fn arrays() {
        let s = json!({"type": "array", "items": {"type": "string"}, "maxItems": 2, "minItems": 1});
        assert!(errs(s.clone(), json!(["a"])).is_empty());
        assert!(!errs(s.clone(), json!([])).is_empty());
        assert!(!errs(s.clone(), json!(["a", "b", "c"])).is_empty());
        let e = errs(s, json!(["a", 1]));
        assert!(e[0].starts_with("/1: expected string"), "{e:?}");
        assert!(!errs(json!({"uniqueItems": true}), json!([1, 2, 1])).is_empty());
        let tuple = json!({"items": [{"type": "string"}], "additionalItems": false});
        assert!(errs(tuple.clone(), json!(["a"])).is_empty());
        assert!(!errs(tuple, json!(["a", 1])).is_empty());
    }

    #[test]
    fn combinators() {
        // The checks/update shape: conclusion required when status is completed.
        let s = json!({
            "type": "object",
            "anyOf": [
                {"properties": {"status": {"enum": ["completed"]}}, "required": ["conclusion"], "additionalProperties": true},
                {"properties": {"status": {"enum": ["queued", "in_progress"]}}, "additionalProperties": true}
            ]
        });
        assert!(errs(
            s.clone(),
            json!({"status": "completed", "conclusion": "success"})
        )
        .is_empty());
        assert!(errs(s.clone(), json!({"status": "queued"})).is_empty());
        assert!(errs(s.clone(), json!({})).is_empty());
        let e = errs(s, json!({"status": "completed"}));
        assert!(
            e[0].contains("matches none of the anyOf alternatives"),
            "{e:?}"
        );
        let one = json!({"oneOf": [{"type": "object", "additionalProperties": true}, {"type": "string"}]});
        assert!(errs(one.clone(), json!({"a": 1})).is_empty());
        assert!(errs(one.clone(), json!("x")).is_empty());
        assert!(!errs(one, json!(1)).is_empty());
        let both = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(errs(both.clone(), json!(1)).len() == 1);
        assert!(errs(both, json!(1.5)).is_empty());
        assert!(!errs(
            json!({"allOf": [{"type": "integer"}, {"minimum": 3}]}),
            json!(2)
        )
        .is_empty());
        assert!(!errs(json!({"not": {"type": "string"}}), json!("a")).is_empty());
    }

    #[test]
    fn unsupported_keywords_are_errors_and_annotations_are_not() {
        let e = errs(json!({"$ref": "#/components/schemas/x"}), json!(1));
        assert!(e[0].contains("unsupported schema keyword `$ref`"), "{e:?}");
        let annotated = json!({
            "type": "string", "description": "d", "title": "t", "example": "e",
            "default": "x", "deprecated": true, "x-github": {}, "readOnly": true
        });
        assert!(errs(annotated, json!("v")).is_empty());
        assert!(!errs(json!(false), json!(1)).is_empty());
        assert!(errs(json!(true), json!(1)).is_empty());
    }

    #[test]
    fn every_subset_request_example_validates() {
        let subset: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/github/openapi-subset.json"
        ))
        .expect("subset parses");
        let mut checked = 0;
        for op in subset["operations"].as_array().into_iter().flatten() {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            for media in content.values() {
                for example in media["examples"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(_, v)| v)
                {
                    let r = validate(&media["schema"], example);
                    assert!(r.is_ok(), "{}: {r:?}", op["operationId"]);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "only {checked} examples");
    }

    #[test]
    fn subset_response_examples_against_their_schemas() {
        // Checks the validator against real data: GitHub's response examples.
        let subset: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/github/openapi-subset.json"
        ))
        .expect("subset parses");
        let mut failures = Vec::new();
        for op in subset["operations"].as_array().into_iter().flatten() {
            for (code, resp) in op["responses_2xx"].as_object().into_iter().flatten() {
                for (media, content) in resp["content"].as_object().into_iter().flatten() {
                    for (name, example) in content["examples"].as_object().into_iter().flatten() {
                        if let Err(e) = validate(&content["schema"], example) {
                            failures.push(format!(
                                "{} {code} {media} {name}: {e:?}",
                                op["operationId"]
                            ));
                        }
                    }
                }
            }
        }
        // GitHub's own examples lag behind some schema changes; the validator must see each
        // (and nothing else). The emulator patches these fields in its response templates.
        let known = [
            "\"pulls/get\" 200 application/json default: [\"/requested_teams/0: missing required property \\\"type\\\"\"]",
            "\"repos/get\" 200 application/json default-response: [\"(root): missing required property \\\"language\\\"\", \"/source: missing required property \\\"language\\\"\"]",
            // The same lag in the operations added with the self-service API (issue 11):
            // pull requests' `requested_teams[].type`, and the permission's `user.role_name`.
            "\"repos/list-pull-requests-associated-with-commit\" 200 application/json default: [\"/0/requested_teams/0: missing required property \\\"type\\\"\"]",
            "\"pulls/create\" 201 application/json default: [\"/requested_teams/0: missing required property \\\"type\\\"\"]",
            "\"pulls/list\" 200 application/json default: [\"/0/requested_teams/0: missing required property \\\"type\\\"\"]",
            "\"pulls/update\" 200 application/json default: [\"/requested_teams/0: missing required property \\\"type\\\"\"]",
            "\"repos/get-collaborator-permission-level\" 200 application/json response-if-user-has-admin-permissions: [\"/user: missing required property \\\"role_name\\\"\"]",
        ];
        assert_eq!(failures, known, "{failures:#?}");
    }
}
