//! Extractors whose every rejection is a [`Problem`], with the status a client can act on.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these wrappers keep the
//! error shape uniform and sort failures precisely:
//! wrong or missing `Content-Type` -> 415, body over the limit -> 413, malformed JSON -> 400,
//! well-formed JSON of the wrong shape (unknown or missing field, wrong type) -> 422 naming the
//! field, and then the type's own [`Validate`] rules -> 422.
//!
//! Every message is in the API's terms ([`api_terms`]): "must be an integer, not a string",
//! never serde's "expected i64" or "expected struct CreateUser". Rules that the OpenAPI
//! document states as a schema come from here too ([`text_schema`], [`whole_number`]), so
//! the document and the check cannot drift apart.

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::request::Parts,
};
use bytes::Bytes;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// Rules a request value checks after it deserialized.
pub trait Validate {
    /// Every field that breaks a rule; empty when the value is acceptable.
    fn validate(&self) -> Vec<FieldError>;
}

/// The rule for a free-text field (a name, a product id): 1 to `max_chars` characters, not
/// only white space, no control characters (the value is stored trimmed). `None` when
/// `value` keeps it. [`text_schema`] says the same in the OpenAPI document.
///
/// ```
/// use service_kit::extract::check_text;
///
/// assert!(check_text("name", "  Ada ", 200).is_none());
/// assert_eq!(check_text("name", " ", 200).unwrap().detail, "must not be empty or only spaces");
/// assert_eq!(check_text("sku", "abc", 2).unwrap().detail, "must be at most 2 characters");
/// assert!(check_text("sku", "a\tb", 20).is_some());
/// ```
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Option<FieldError> {
    let problem = if value.trim().is_empty() {
        "must not be empty or only spaces".to_owned()
    } else if value.chars().count() > max_chars {
        format!("must be at most {max_chars} characters")
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return None;
    };
    Some(FieldError::new(field, problem))
}

/// White space as `str::trim` sees it (Unicode `White_Space`) plus the control characters
/// (`char::is_control`), as a regular-expression class body.
pub const SPACE_OR_CONTROL_CLASS: &str =
    "\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The OpenAPI schema of a [`check_text`] field: a string of 1 to `max_chars` characters
/// with something besides white space and no control character.
pub fn text_schema(max_chars: usize, description: &str) -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let control = "\\u0000-\\u001f\\u007f-\\u009f";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(format!(
            "^[^{control}]*[^{SPACE_OR_CONTROL_CLASS}][^{control}]*$"
        )))
        .description(Some(description))
        .build()
}

/// Deserializes an integer field the way JSON Schema reads `"type": "integer"`: any number
/// without a fractional part, so `2`, `2.0` and `2e0` are all 2 (exactly, up to 2^53 for
/// the forms with a point or exponent). Use with `#[serde(deserialize_with = ...)]`.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Line {
///     #[serde(deserialize_with = "service_kit::extract::whole_number")]
///     quantity: i64,
/// }
///
/// let q = |json: &str| serde_json::from_str::<Line>(json).map(|l| l.quantity);
/// assert_eq!(q(r#"{"quantity": 2}"#).unwrap(), 2);
/// assert_eq!(q(r#"{"quantity": 2.0}"#).unwrap(), 2);
/// assert!(q(r#"{"quantity": 2.5}"#).is_err());
/// assert!(q(r#"{"quantity": "2"}"#).is_err());
/// ```
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::{Error, Unexpected, Visitor};

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
            exact_integer(v).ok_or_else(|| E::invalid_type(Unexpected::Float(v), &self))
        }
    }

    let v = deserializer.deserialize_any(Whole)?;
    T::try_from(v)
        .map_err(|_| D::Error::invalid_value(Unexpected::Signed(v), &"an integer in range"))
}

/// [`whole_number`] for an optional query parameter, which arrives as text: `280`, `280.0`
/// and `2.8e2` are all 280, as JSON Schema reads an integer. Use with
/// `#[serde(default, deserialize_with = ...)]` on an `Option<i64>`.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Q {
///     #[serde(default, deserialize_with = "service_kit::extract::query_integer")]
///     limit: Option<i64>,
/// }
///
/// let q = |s: &str| serde_urlencoded::from_str::<Q>(s).map(|q| q.limit);
/// assert_eq!(q("limit=280.0").unwrap(), Some(280));
/// assert_eq!(q("").unwrap(), None);
/// assert!(q("limit=2.5").is_err());
/// assert!(q("limit=ten").is_err());
/// ```
pub fn query_integer<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::{Deserialize, de::Error};

    let Some(raw) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Ok(v) = raw.parse::<i64>() {
        return Ok(Some(v));
    }
    raw.parse::<f64>()
        .ok()
        .and_then(exact_integer)
        .map(Some)
        .ok_or_else(|| D::Error::custom("must be an integer"))
}

/// `v` as an integer when it has no fractional part and is at most 2^53 in size (beyond
/// that a float no longer holds every integer exactly).
fn exact_integer(v: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    // In range and whole, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT).then_some(v as i64)
}

/// serde's message about a value said in API terms: JSON types instead of Rust ones
/// (`invalid type: string "x", expected i64` -> `must be an integer, not a string`), and the
/// field named by the caller rather than in the message.
///
/// ```
/// use service_kit::extract::api_terms;
///
/// assert_eq!(api_terms("invalid type: string \"x\", expected i64"), "must be an integer, not a string");
/// assert_eq!(api_terms("invalid type: sequence, expected struct CreateUser"), "must be a JSON object, not an array");
/// assert_eq!(api_terms("missing field `email`"), "is required");
/// assert_eq!(api_terms("invalid digit found in string"), "must be an integer");
/// ```
pub fn api_terms(message: &str) -> String {
    if let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        return format!("must be {}, not {}", expected_term(expected), got_term(got));
    }
    if let Some((_, expected)) = message
        .strip_prefix("invalid value: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        return format!("must be {}", expected_term(expected));
    }
    if message.starts_with("invalid length ") {
        return "has the wrong number of elements".to_owned();
    }
    if message.starts_with("missing field `") {
        return "is required".to_owned();
    }
    if message.starts_with("duplicate field `") {
        return "is given more than once".to_owned();
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return match rest.split_once(", expected one of ") {
            Some((_, fields)) => format!(
                "is not a field of this request (it has {})",
                fields.replace('`', "")
            ),
            None => "is not a field of this request".to_owned(),
        };
    }
    match message {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => "must be an integer".to_owned(),
        "invalid float literal" => "must be a number".to_owned(),
        _ => message.to_owned(),
    }
}

/// What serde expected, as a JSON type.
fn expected_term(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "an integer" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "string" | "a character" | "char" => "a string",
        "a boolean" | "bool" => "true or false",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e == "a map" || e == "map" => "a JSON object",
        e if e.starts_with("tuple") => "an array",
        e => e,
    }
}

/// What serde got, as a JSON type.
fn got_term(got: &str) -> &str {
    match got.split([' ', '`']).next().unwrap_or(got) {
        "string" | "char" => "a string",
        "integer" => "an integer",
        "floating" => "a fractional number",
        "boolean" => "true or false",
        "map" => "an object",
        "sequence" => "an array",
        "null" | "unit" | "Option" => "null",
        _ => "that",
    }
}

/// A JSON body, checked as described in the module docs.
///
/// ```
/// use serde::Deserialize;
/// use service_kit::{extract::{ApiJson, Validate}, problem::FieldError};
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct NewThing { name: String }
///
/// impl Validate for NewThing {
///     fn validate(&self) -> Vec<FieldError> {
///         if self.name.is_empty() { vec![FieldError::new("name", "must not be empty")] } else { vec![] }
///     }
/// }
///
/// async fn create(ApiJson(thing): ApiJson<NewThing>) -> String { thing.name }
/// let _app: axum::Router = axum::Router::new().route("/things", axum::routing::post(create));
/// ```
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(req.headers()) {
            return Err(Problem::unsupported_media_type(
                "the body must be JSON: send `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large("the request body is larger than this service accepts")
            } else {
                Problem::bad_request("the request body could not be read")
            }
        })?;
        parse_json(&bytes).and_then(validated).map(ApiJson)
    }
}

/// `value` when it passes its [`Validate`] rules, else a 422 listing every broken one.
fn validated<T: Validate>(value: T) -> Result<T, Problem> {
    let errors = value.validate();
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(Problem::validation(errors))
    }
}

/// Parses `bytes` as a `T`, sorting failures into 400 (not JSON) and 422 (wrong shape).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    // serde also reads a struct from an array of its fields in order; a body is an object.
    if !value.is_object() {
        let got = match &value {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "true or false",
            _ => "null",
        };
        return Err(Problem::validation(vec![FieldError::new(
            "body",
            format!("must be a JSON object, not {got}"),
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = field_name(&path, &inner.to_string());
        Problem::validation(vec![FieldError::new(
            field,
            api_terms(&strip_position(&inner)),
        )])
    })
}

/// serde reports a missing or unknown field at the parent's path ("."), naming the field in
/// backticks in the message; prefer that name so the problem points at the field itself.
fn field_name(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    match (path, named) {
        ("." | "", Some(name)) => name.to_owned(),
        (_, Some(name)) if !path.ends_with(name) => format!("{path}.{name}"),
        ("." | "", None) => "body".to_owned(),
        _ => path.to_owned(),
    }
}

fn strip_position(err: &serde_json::Error) -> String {
    let msg = err.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A query string, rejected as 400 when it does not parse and 422 when [`Validate`] fails.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: T = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = field_name(&path, &message);
            Problem::bad_request(format!(
                "invalid query string: {field}: {}",
                api_terms(&message)
            ))
        })?;
        validated(value).map(ApiQuery)
    }
}

/// Path parameters, rejected as 400 when they do not parse (an id that is not a number).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|rejection| {
                Problem::bad_request(format!("invalid path: {}", path_problem(&rejection)))
            })
    }
}

/// A path rejection in API terms (axum says "Cannot parse `x` to a `i64`").
fn path_problem(rejection: &axum::extract::rejection::PathRejection) -> String {
    use axum::extract::{path::ErrorKind, rejection::PathRejection};

    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        return rejection.body_text();
    };
    match e.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => format!("{key}: `{value}` is not {}", expected_term(expected_type)),
        ErrorKind::ParseError {
            value,
            expected_type,
        }
        | ErrorKind::ParseErrorAtIndex {
            value,
            expected_type,
            ..
        } => format!("`{value}` is not {}", expected_term(expected_type)),
        ErrorKind::InvalidUtf8InPathParam { key } => format!("{key}: is not valid UTF-8"),
        _ => "a path parameter could not be read".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        quantity: u32,
    }

    #[test]
    fn sorts_json_failures() {
        let p = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(p.status, 400);
        let p = parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "quantity");
        let p = parse_json::<Body>(br#"{"name":"a","quantity":1,"extra":2}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "extra");
        let p = parse_json::<Body>(br#"{"name":"a","quantity":-1}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "quantity");
        let p = parse_json::<Body>(br#"{"name":"a","quantity":1} trailing"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert!(parse_json::<Body>(br#"{"name":"a","quantity":1}"#).is_ok());
    }

    /// No rejection names a Rust type: every message speaks JSON and the API's field names.
    #[tokio::test]
    async fn rejections_are_said_in_api_terms() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Query {
            limit: Option<i64>,
        }
        impl Validate for Query {
            fn validate(&self) -> Vec<FieldError> {
                Vec::new()
            }
        }
        let rust = [
            "i64", "u32", "struct", "Body", "Query", "sequence", "map", "`",
        ];
        let mut messages = Vec::new();
        for (body, field) in [
            (&br#"[]"#[..], "body"),
            (br#"{"name":"a","quantity":"x"}"#, "quantity"),
            (br#"{"name":"a","quantity":2.5}"#, "quantity"),
            (br#"{"name":7,"quantity":1}"#, "name"),
        ] {
            let p = parse_json::<Body>(body).unwrap_err();
            assert_eq!(p.errors[0].field, field);
            messages.push(p.errors[0].detail.clone());
        }
        assert_eq!(messages[0], "must be a JSON object, not an array");
        assert_eq!(messages[1], "must be a non-negative integer, not a string");
        let mut parts = http::Request::get("/x?limit=ten")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let p = ApiQuery::<Query>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        messages.push(p.detail.clone().unwrap());
        assert_eq!(
            p.detail.as_deref(),
            Some("invalid query string: limit: must be an integer")
        );
        for m in &messages {
            for word in rust {
                assert!(!m.contains(word), "{m:?} names `{word}`");
            }
        }
    }

    #[test]
    fn json_content_types() {
        let mut h = http::HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }
}
