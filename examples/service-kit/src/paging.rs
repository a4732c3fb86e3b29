//! Keyset paging by id: `?limit=&cursor=` in, `next_cursor` out.
//!
//! The cursor is the last id of the previous page, so a page never skips or repeats a row
//! while rows are being added, unlike an offset. Clients pass back what they were given; the
//! OpenAPI document states its form ([`cursor_schema`]): up to 18 digits, and an empty
//! cursor is the first page.

use crate::problem::FieldError;

/// The page size when none is asked for is the service's; this is the largest allowed.
pub const MAX_LIMIT: i64 = 100;

/// The most digits a cursor has: every id up to 10^18 - 1 fits, and so does every such
/// number in an `i64`.
pub const CURSOR_DIGITS: usize = 18;

/// Field errors for a `limit` outside `1..=100` and a cursor this service did not issue.
///
/// ```
/// use service_kit::paging::check;
///
/// assert!(check(Some(10), Some("42")).is_empty());
/// assert!(check(None, Some("")).is_empty());
/// assert_eq!(check(Some(0), Some("x")).len(), 2);
/// assert_eq!(check(None, Some("+5")).len(), 1);
/// ```
pub fn check(limit: Option<i64>, cursor: Option<&str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if limit.is_some_and(|l| !(1..=MAX_LIMIT).contains(&l)) {
        errors.push(FieldError::new("limit", "must be between 1 and 100"));
    }
    if cursor.is_some_and(|c| after(Some(c)).is_none()) {
        errors.push(FieldError::new(
            "cursor",
            "is not a cursor this service issued",
        ));
    }
    errors
}

/// The id to continue after: 0 without a cursor or with an empty one, `None` for one that
/// is not 1 to [`CURSOR_DIGITS`] digits.
pub fn after(cursor: Option<&str>) -> Option<i64> {
    match cursor {
        None | Some("") => Some(0),
        Some(c) if c.len() <= CURSOR_DIGITS && c.bytes().all(|b| b.is_ascii_digit()) => {
            c.parse().ok()
        }
        Some(_) => None,
    }
}

/// The OpenAPI schema of the `cursor` query parameter.
pub fn cursor_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .max_length(Some(CURSOR_DIGITS))
        .pattern(Some(format!("^[0-9]{{0,{CURSOR_DIGITS}}}$")))
        .build()
}

/// The cursor of the next page: the last id, when the page came back full.
pub fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    if i64::try_from(items.len()).unwrap_or(0) == limit {
        items.last().map(|t| id(t).to_string())
    } else {
        None
    }
}
