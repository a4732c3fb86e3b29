//! Just enough of the Prometheus text format to read the services' `/metrics`.
//!
//! The dashboard and the chaos load generator both read what the services' `metrics` module
//! writes: [`parse`] turns the text into samples (name, labels, value), [`sum`] adds up the
//! series of one name that a filter keeps, [`Histogram`] aggregates a histogram across label
//! sets, and [`Accumulator`] follows one counter across process restarts. Quantiles follow
//! Prometheus' `histogram_quantile`: linear interpolation inside the bucket that holds the
//! rank, so a p99 is only as precise as the buckets are.
//!
//! It needs no dependency, so a tool that only reads metrics does not compile a server.
//!
//! ```
//! let text = "# TYPE requests counter\n\
//!     requests{route=\"/users/{id}\",status=\"200\"} 7\n\
//!     requests{route=\"/users/{id}\",status=\"503\"} 2\n";
//! let samples = prom_text::parse(text);
//! let errors = prom_text::sum(&samples, "requests", |s| s.label("status") == Some("503"));
//! assert_eq!(errors, 2.0);
//! ```

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, including any `_bucket`/`_count`/`_sum` suffix.
    pub name: String,
    /// Label pairs in the order they appeared.
    pub labels: Vec<(String, String)>,
    /// The value; `+Inf`, `-Inf` and `NaN` are accepted.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the text exposition format; lines it cannot read are skipped, because
/// one odd line must not blank a whole dashboard or stop a load run.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?;
    let value = parse_value(value)?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// Sum of every series of `name` whose labels pass `keep`.
pub fn sum<F>(samples: &[Sample], name: &str, keep: F) -> f64
where
    F: Fn(&Sample) -> bool,
{
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .map(|s| s.value)
        .sum()
}

/// A histogram summed over label sets: cumulative counts per upper bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)` sorted by `le`; the last bound is `+Inf` when exported.
    pub buckets: Vec<(f64, f64)>,
    /// Total number of observations.
    pub count: f64,
    /// Sum of observed values.
    pub sum: f64,
}

impl Histogram {
    /// Aggregates `<name>_bucket`, `<name>_count` and `<name>_sum` over the series `keep` accepts.
    pub fn from_samples<F>(samples: &[Sample], name: &str, keep: F) -> Histogram
    where
        F: Fn(&Sample) -> bool,
    {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in samples.iter().filter(|s| s.name == bucket_name && keep(s)) {
            let Some(le) = s.label("le").and_then(parse_value) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(slot) => slot.1 += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            count: sum(samples, &format!("{name}_count"), &keep),
            sum: sum(samples, &format!("{name}_sum"), &keep),
        }
    }

    /// Observations since `prev`. A counter that went down means the process
    /// restarted, so everything it now holds is new.
    pub fn since(&self, prev: &Histogram) -> Histogram {
        let reset = self.count < prev.count
            || self
                .buckets
                .iter()
                .any(|(le, c)| prev.buckets.iter().any(|(ple, pc)| ple == le && pc > c));
        if reset {
            return self.clone();
        }
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let before = prev
                    .buckets
                    .iter()
                    .find(|(ple, _)| ple == le)
                    .map_or(0.0, |(_, pc)| *pc);
                (*le, c - before)
            })
            .collect();
        Histogram {
            buckets,
            count: self.count - prev.count,
            sum: self.sum - prev.sum,
        }
    }

    /// The `q` quantile (0..=1) like Prometheus' `histogram_quantile`, or `None`
    /// when there were no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (i, (le, count)) in self.buckets.iter().enumerate() {
            if *count >= rank {
                if le.is_infinite() {
                    // Above the highest finite bound: the best estimate is that bound.
                    return Some(if i == 0 { 0.0 } else { lower });
                }
                if *count == below {
                    return Some(*le);
                }
                return Some(lower + (le - lower) * (rank - below) / (count - below));
            }
            lower = *le;
            below = *count;
        }
        Some(lower)
    }
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

    const TEXT: &str = r#"
# HELP http_server_request_duration_seconds Request latency.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="0.005"} 10
http_server_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="0.01"} 20
http_server_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="0.1"} 30
http_server_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="+Inf"} 40
http_server_request_duration_seconds_sum{method="GET",route="/users/{id}",status="200"} 1.5
http_server_request_duration_seconds_count{method="GET",route="/users/{id}",status="200"} 40
http_server_request_duration_seconds_bucket{method="GET",route="/metrics",status="200",le="0.005"} 5
http_server_request_duration_seconds_bucket{method="GET",route="/metrics",status="200",le="0.01"} 5
http_server_request_duration_seconds_bucket{method="GET",route="/metrics",status="200",le="0.1"} 5
http_server_request_duration_seconds_bucket{method="GET",route="/metrics",status="200",le="+Inf"} 5
http_server_request_duration_seconds_count{method="GET",route="/metrics",status="200"} 5
resilience_circuit_state{name="user-service"} 1
weird{msg="a \"quoted\", comma\\ and \n newline",} 3 1700000000000
garbage line without value
"#;

    #[test]
    fn parses_names_labels_escapes_and_special_values() {
        let samples = parse(TEXT);
        let state = samples
            .iter()
            .find(|s| s.name == "resilience_circuit_state")
            .unwrap();
        assert_eq!(state.label("name"), Some("user-service"));
        assert_eq!(state.value, 1.0);
        let weird = samples.iter().find(|s| s.name == "weird").unwrap();
        assert_eq!(
            weird.label("msg"),
            Some("a \"quoted\", comma\\ and \n newline")
        );
        assert_eq!(weird.value, 3.0);
        let inf = samples
            .iter()
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.label("route"), Some("/users/{id}"));
        assert!(!samples.iter().any(|s| s.name == "garbage"));
        assert_eq!(parse("x NaN").first().map(|s| s.value.is_nan()), Some(true));
    }

    #[test]
    fn sums_and_histograms_respect_the_filter() {
        let samples = parse(TEXT);
        let not_metrics = |s: &Sample| s.label("route") != Some("/metrics");
        assert_eq!(
            sum(
                &samples,
                "http_server_request_duration_seconds_count",
                |_| true
            ),
            45.0
        );
        let h = Histogram::from_samples(
            &samples,
            "http_server_request_duration_seconds",
            not_metrics,
        );
        assert_eq!(
            h.buckets,
            vec![
                (0.005, 10.0),
                (0.01, 20.0),
                (0.1, 30.0),
                (f64::INFINITY, 40.0)
            ]
        );
        assert_eq!(h.count, 40.0);
        assert_eq!(h.sum, 1.5);
        let all =
            Histogram::from_samples(&samples, "http_server_request_duration_seconds", |_| true);
        assert_eq!(all.buckets[0], (0.005, 15.0));
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = Histogram {
            buckets: vec![
                (0.005, 10.0),
                (0.01, 20.0),
                (0.1, 30.0),
                (f64::INFINITY, 40.0),
            ],
            count: 40.0,
            sum: 1.0,
        };
        // rank 20 is the top of the second bucket.
        assert!((h.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        // rank 5 is halfway into the first bucket, whose lower bound is 0.
        assert!((h.quantile(0.125).unwrap() - 0.0025).abs() < 1e-12);
        // rank 25 is halfway between 0.01 and 0.1.
        assert!((h.quantile(0.625).unwrap() - 0.055).abs() < 1e-12);
        // rank 39.6 falls in +Inf: report the highest finite bound.
        assert_eq!(h.quantile(0.99), Some(0.1));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(h.quantile(1.5), None);
    }

    #[test]
    fn since_subtracts_and_treats_a_drop_as_a_restart() {
        let before = Histogram {
            buckets: vec![(0.01, 10.0), (f64::INFINITY, 10.0)],
            count: 10.0,
            sum: 0.05,
        };
        let after = Histogram {
            buckets: vec![(0.01, 10.0), (f64::INFINITY, 14.0)],
            count: 14.0,
            sum: 4.05,
        };
        let d = after.since(&before);
        assert_eq!(d.buckets, vec![(0.01, 0.0), (f64::INFINITY, 4.0)]);
        assert_eq!(d.count, 4.0);
        assert_eq!(d.quantile(0.5), Some(0.01));
        let restarted = Histogram {
            buckets: vec![(0.01, 2.0), (f64::INFINITY, 3.0)],
            count: 3.0,
            sum: 0.5,
        };
        assert_eq!(restarted.since(&after), restarted);
    }

    const COUNTERS: &str = "# TYPE x counter\n\
        http_server_request_duration_seconds_count{method=\"GET\",route=\"/users/{id}\",status=\"200\"} 10\n\
        http_server_request_duration_seconds_count{method=\"POST\",route=\"/users\",status=\"201\"} 3\n\
        http_server_request_duration_seconds_count{method=\"GET\",route=\"/metrics\",status=\"200\"} 99\n\
        http_server_request_duration_seconds_count_extra 5\n\
        resilience_retry_retries_total{name=\"user-service\"} 4\n\
        resilience_retry_retries_total{name=\"a \\\"b\\\"\"} 1\n";

    #[test]
    fn sums_series_that_pass_the_filter() {
        let samples = parse(COUNTERS);
        let name = "http_server_request_duration_seconds_count";
        assert_eq!(sum(&samples, name, |_| true), 112.0);
        let lookups = sum(&samples, name, |s| {
            s.label("method") == Some("GET") && s.label("route") == Some("/users/{id}")
        });
        assert_eq!(lookups, 10.0);
        assert_eq!(
            sum(&samples, "resilience_retry_retries_total", |_| true),
            5.0
        );
        assert_eq!(
            sum(&samples, "resilience_retry_retries_total", |s| s
                .label("name")
                == Some("a \"b\"")),
            1.0
        );
        assert_eq!(sum(&samples, "missing", |_| true), 0.0);
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
