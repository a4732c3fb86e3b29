//! Sums of Prometheus counters, read from `/metrics` text.

/// Sum of every series of `name` whose labels pass `keep`; labels arrive as
/// `(key, value)` pairs. Lines it cannot read are skipped.
pub fn sum<F>(text: &str, name: &str, keep: F) -> f64
where
    F: Fn(&[(String, String)]) -> bool,
{
    let mut total = 0.0;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.starts_with(name) {
            continue;
        }
        let rest = &line[name.len()..];
        let (labels, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some(close) = inner.rfind('}') else {
                continue;
            };
            (labels(&inner[..close]), &inner[close + 1..])
        } else if rest.starts_with(char::is_whitespace) {
            (Vec::new(), rest)
        } else {
            continue; // a longer name with the same prefix
        };
        let Some(Ok(v)) = value.split_whitespace().next().map(str::parse::<f64>) else {
            continue;
        };
        if keep(&labels) {
            total += v;
        }
    }
    total
}

fn labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut escaped = false;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = i;
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        out.push((key, value));
        rest = body.get(end + 1..).unwrap_or("");
    }
    out
}

/// The value of label `key`.
pub fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A counter summed across process restarts: a drop means the process started
/// again from zero, so the new value is all new.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    last: Option<f64>,
    /// Increase seen since the first sample.
    pub total: f64,
}

impl Accumulator {
    /// Adds one sample.
    pub fn sample(&mut self, value: f64) {
        if let Some(last) = self.last {
            self.total += if value >= last { value - last } else { value };
        }
        self.last = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x counter\n\
        http_server_request_duration_seconds_count{method=\"GET\",route=\"/users/{id}\",status=\"200\"} 10\n\
        http_server_request_duration_seconds_count{method=\"POST\",route=\"/users\",status=\"201\"} 3\n\
        http_server_request_duration_seconds_count{method=\"GET\",route=\"/metrics\",status=\"200\"} 99\n\
        http_server_request_duration_seconds_count_extra 5\n\
        resilience_retry_retries_total{name=\"user-service\"} 4\n\
        resilience_retry_retries_total{name=\"a \\\"b\\\"\"} 1\n";

    #[test]
    fn sums_series_that_pass_the_filter() {
        let name = "http_server_request_duration_seconds_count";
        assert_eq!(sum(TEXT, name, |_| true), 112.0);
        let lookups = sum(TEXT, name, |l| {
            label(l, "method") == Some("GET") && label(l, "route") == Some("/users/{id}")
        });
        assert_eq!(lookups, 10.0);
        assert_eq!(sum(TEXT, "resilience_retry_retries_total", |_| true), 5.0);
        assert_eq!(
            sum(TEXT, "resilience_retry_retries_total", |l| label(l, "name")
                == Some("a \"b\"")),
            1.0
        );
        assert_eq!(sum(TEXT, "missing", |_| true), 0.0);
    }

    #[test]
    fn accumulator_survives_restarts() {
        let mut a = Accumulator::default();
        for v in [100.0, 110.0, 130.0, 5.0, 8.0] {
            a.sample(v);
        }
        assert_eq!(a.total, 30.0 + 5.0 + 3.0);
    }
}
