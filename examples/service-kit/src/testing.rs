//! Test support shared by the services' tests: calling a router with `oneshot`, and checking
//! a service's OpenAPI document against its routes.

use axum::{Router, body::Body};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A response, with its body parsed as JSON (or kept as a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Value,
}

/// Sends `req` to `app` with `oneshot`.
pub async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

/// A JSON request.
pub fn json_req(method: Method, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("valid request")
}

/// A `GET`.
pub fn get(uri: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("valid request")
}

/// Asserts `r` is a problem+json of `status` carrying the response's request id.
pub fn assert_problem(r: &Reply, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        crate::problem::PROBLEM_JSON,
        "{:?}",
        r.body
    );
    assert_eq!(r.body["status"], status);
    assert!(r.body["title"].is_string());
    assert!(
        r.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:problem:") || t.starts_with("urn:resilience:"))
    );
    assert_eq!(
        r.body["request_id"].as_str(),
        r.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
    );
}

/// The operations every service has ([`crate::ops`]).
pub const OPS_OPERATIONS: &[&str] = &[
    "get /health",
    "get /health/live",
    "get /health/ready",
    "get /metrics",
    "get /openapi.json",
];

/// The admin operations, documented only when `ADMIN_TOKEN` enables them.
pub const ADMIN_OPERATIONS: &[&str] = &[
    "delete /admin/faults",
    "get /admin/faults",
    "put /admin/faults",
];

/// Checks the document at `/openapi.json` against the router, and returns the service's own
/// documented operations (all but [`OPS_OPERATIONS`], which must all be there, and
/// [`ADMIN_OPERATIONS`], all there or none) as sorted `"method path"` strings:
///
/// - every documented operation is routed (not the no-route 404, not 405), and answers with a
///   status it documents when sent its documented example body and header parameters;
/// - every other method on a documented path is 405 (nothing routed goes undocumented there);
/// - every operation documents at least one response.
///
/// `{name}` path parameters are filled from `params`.
pub async fn check_openapi(app: &Router, params: &[(&str, &str)]) -> Vec<String> {
    let r = call(app, get("/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3"
    );
    let mut documented = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        let mut concrete = path.clone();
        for (name, value) in params {
            concrete = concrete.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !concrete.contains('{'),
            "no value for a parameter of {path}"
        );
        for m in ["get", "post", "put", "delete", "patch"] {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            let mut builder = Request::builder().method(method).uri(&concrete);
            let op = ops.get(m);
            let mut body = Body::empty();
            if let Some(op) = op {
                documented.push(format!("{m} {path}"));
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{m} {path} documents no response"
                );
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "header" {
                        let name = p["name"].as_str().expect("header name");
                        builder = builder.header(name, uuid::Uuid::now_v7().to_string());
                    }
                }
                if let Some(r) =
                    op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
                {
                    let name = r.rsplit('/').next().expect("schema name");
                    let example = &doc["components"]["schemas"][name]["example"];
                    assert!(!example.is_null(), "schema {name} has no example");
                    builder = builder.header(header::CONTENT_TYPE, "application/json");
                    body = Body::from(example.to_string());
                }
            }
            let r = call(app, builder.body(body).expect("request")).await;
            match op {
                Some(op) => {
                    assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                    assert_ne!(r.body["type"], "urn:problem:no-route", "{m} {path}");
                    let code = r.status.as_str().to_owned();
                    assert!(
                        op["responses"].get(&code).is_some(),
                        "{m} {path} answered {code}, which it does not document: {:?}",
                        r.body
                    );
                }
                None => assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is routed but not documented"
                ),
            }
        }
    }
    documented.sort();
    for op in OPS_OPERATIONS {
        assert!(documented.iter().any(|d| d == op), "{op} is not documented");
    }
    let admin = ADMIN_OPERATIONS
        .iter()
        .filter(|op| documented.iter().any(|d| d == *op))
        .count();
    assert!(
        admin == 0 || admin == ADMIN_OPERATIONS.len(),
        "some admin operations documented, not all: {documented:?}"
    );
    documented.retain(|d| {
        !OPS_OPERATIONS.contains(&d.as_str()) && !ADMIN_OPERATIONS.contains(&d.as_str())
    });
    documented
}

/// The metric families in a Prometheus text `exposition` that have a `# TYPE` line but no
/// `# HELP` line (what `promtool check metrics` reports as "no help text").
///
/// ```
/// use service_kit::testing::undescribed_metrics;
///
/// let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 2\n";
/// assert_eq!(undescribed_metrics(text), ["b"]);
/// ```
pub fn undescribed_metrics(exposition: &str) -> Vec<&str> {
    fn family<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
        line.strip_prefix(prefix)?.split_whitespace().next()
    }
    let described: std::collections::HashSet<&str> = exposition
        .lines()
        .filter_map(|l| family(l, "# HELP "))
        .collect();
    exposition
        .lines()
        .filter_map(|l| family(l, "# TYPE "))
        .filter(|name| !described.contains(name))
        .collect()
}
