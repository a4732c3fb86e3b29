//! What the load generator records: attempts, keys and the chaos script's events.

use serde::Serialize;

/// What one HTTP attempt to place an order ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptResult {
    /// 200/201 with an order id: the order is acknowledged.
    Ok {
        /// The order id the service returned.
        id: String,
        /// 201 for a new order, 200 (or 201) for a replay.
        status: u16,
    },
    /// A definite refusal: a 4xx (other than 408/409/429) or a 503.
    Failed {
        /// The status code.
        status: u16,
    },
    /// The connection was refused: nothing was sent, nothing can be stored.
    Refused,
    /// No definite answer: the order may or may not have been stored.
    Unknown {
        /// `timeout`, `reset`, `in_flight` (409) or `status_NNN`.
        why: String,
    },
}

impl AttemptResult {
    /// Ok or a definite failure: sending the key again would not tell us more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            AttemptResult::Ok { .. } | AttemptResult::Failed { .. }
        )
    }

    /// Anything but ok.
    pub fn is_error(&self) -> bool {
        !matches!(self, AttemptResult::Ok { .. })
    }

    /// Classifies an HTTP status; `id` is the order id read from a 2xx body.
    pub fn from_status(status: u16, id: Option<String>) -> AttemptResult {
        match (status, id) {
            (200..=299, Some(id)) => AttemptResult::Ok { id, status },
            (409, _) => AttemptResult::Unknown {
                why: "in_flight".into(),
            },
            (408 | 425 | 429, _) => AttemptResult::Unknown {
                why: format!("status_{status}"),
            },
            (400..=499 | 503, _) => AttemptResult::Failed { status },
            _ => AttemptResult::Unknown {
                why: format!("status_{status}"),
            },
        }
    }
}

/// One attempt, in the order it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// The order (key) sequence number.
    pub seq: usize,
    /// Start time, ms since the Unix epoch (to line up with the chaos events).
    pub start_ms: u64,
    /// How long until the answer or the error.
    pub latency_ms: f64,
    /// What came back.
    pub result: AttemptResult,
    /// Sent while healing after the load, not part of the load figures.
    pub heal: bool,
}

/// One order the generator meant to place.
#[derive(Debug, Clone, Serialize)]
pub struct OrderKey {
    /// Sequence number, unique within the run.
    pub seq: usize,
    /// The `Idempotency-Key` header value.
    pub key: String,
    /// Index into the run's users.
    pub user: usize,
    /// The JSON body sent with every attempt of this key.
    pub body: serde_json::Value,
}

/// A line of the chaos script's event log: `<epoch_ms> <action> <target> [detail]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChaosEvent {
    /// When, ms since the Unix epoch.
    pub t_ms: u64,
    /// `start`/`end` (a scenario), `kill`, `restart`, `ready`, `fault`, `clear`.
    pub action: String,
    /// Scenario name or service name.
    pub target: String,
}

impl ChaosEvent {
    /// Parses the event log; blank lines and `#` comments are skipped, bad lines reported.
    pub fn parse_log(text: &str) -> Result<Vec<ChaosEvent>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(t), Some(action)) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: expected `<ms> <action> [target]`", n + 1));
            };
            let t_ms = t
                .parse()
                .map_err(|_| format!("line {}: bad time {t:?}", n + 1))?;
            out.push(ChaosEvent {
                t_ms,
                action: action.to_owned(),
                target: parts.next().unwrap_or("").to_owned(),
            });
        }
        out.sort_by_key(|e| e.t_ms);
        Ok(out)
    }
}

/// A breaker state seen by polling order-service's `/resilience`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerObservation {
    /// When, ms since the Unix epoch.
    pub t_ms: u64,
    /// Breaker name.
    pub name: String,
    /// State as reported (`closed`, `open`, `half_open`, ...).
    pub state: String,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_they_prove() {
        assert_eq!(
            AttemptResult::from_status(201, Some("7".into())),
            AttemptResult::Ok {
                id: "7".into(),
                status: 201
            }
        );
        assert!(matches!(
            AttemptResult::from_status(409, None),
            AttemptResult::Unknown { .. }
        ));
        assert!(matches!(
            AttemptResult::from_status(429, None),
            AttemptResult::Unknown { .. }
        ));
        assert_eq!(
            AttemptResult::from_status(503, None),
            AttemptResult::Failed { status: 503 }
        );
        assert_eq!(
            AttemptResult::from_status(422, None),
            AttemptResult::Failed { status: 422 }
        );
        assert!(matches!(
            AttemptResult::from_status(504, None),
            AttemptResult::Unknown { .. }
        ));
        // A 2xx without an id proves nothing.
        assert!(matches!(
            AttemptResult::from_status(201, None),
            AttemptResult::Unknown { .. }
        ));
    }

    #[test]
    fn event_log_parses_and_sorts() {
        let log = "# chaos\n2000 kill user-service\n1000 start user-kill\n\n3000 end user-kill\n";
        let events = ChaosEvent::parse_log(log).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].action, "start");
        assert_eq!(events[1].target, "user-service");
        assert!(ChaosEvent::parse_log("soon kill x").is_err());
    }
}
