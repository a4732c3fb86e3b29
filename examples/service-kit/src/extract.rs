//! Extractors whose every rejection is a [`Problem`], with the status a client can act on.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these wrappers keep the
//! error shape uniform and sort failures precisely:
//! wrong or missing `Content-Type` -> 415, body over the limit -> 413, malformed JSON -> 400,
//! well-formed JSON of the wrong shape (unknown or missing field, wrong type) -> 422 naming the
//! field, and then the type's own [`Validate`] rules -> 422.

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
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

/// The rule for a free-text field (a name, a product id): after trimming, 1 to `max_chars`
/// characters and no control characters. `None` when `value` keeps it.
///
/// ```
/// use service_kit::extract::check_text;
///
/// assert!(check_text("name", "  Ada ", 200).is_none());
/// assert_eq!(check_text("name", " ", 200).unwrap().detail, "must not be empty");
/// assert_eq!(check_text("sku", "abc", 2).unwrap().detail, "must be at most 2 characters");
/// ```
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Option<FieldError> {
    let value = value.trim();
    let problem = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.chars().count() > max_chars {
        format!("must be at most {max_chars} characters")
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return None;
    };
    Some(FieldError::new(field, problem))
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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = field_name(&path, &inner.to_string());
                Problem::validation(vec![FieldError::new(field, strip_position(&inner))])
            }
            _ => Problem::bad_request(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
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
        let Query(value) = Query::<T>::try_from_uri(&parts.uri).map_err(|e| {
            Problem::bad_request(format!("invalid query string: {}", e.body_text()))
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
            .map_err(|e| Problem::bad_request(format!("invalid path: {}", e.body_text())))
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
