//! Durations in configuration files: human strings (`"250ms"`, `"2s"`, `"1m 30s"`), and an
//! error that shows the format when a value is not one.
//!
//! For `#[serde(with = "crate::config::duration")]` on a `Duration` field, and
//! `crate::config::duration::option` on an `Option<Duration>`.

use std::{fmt, time::Duration};

use humantime::{format_duration, parse_duration};
use serde::{Deserializer, Serializer, de};

/// What a duration looks like, for error messages.
pub(crate) const EXPECTED: &str = "a duration such as \"250ms\" or \"2s\"";

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_duration(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Human)
}

/// Reads a duration string; anything else (a bare number, a boolean) is refused with the
/// expected format.
struct Human;

impl de::Visitor<'_> for Human {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(|e| {
            E::custom(format_args!(
                "invalid duration {v:?} ({e}): expected {EXPECTED}"
            ))
        })
    }
}

/// The same for an `Option<Duration>`: absent or `null` is `None`.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(MaybeHuman)
    }

    struct MaybeHuman;

    impl<'de> de::Visitor<'de> for MaybeHuman {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config {
        #[serde(with = "super")]
        wait: Duration,
        #[serde(default, with = "option")]
        cap: Option<Duration>,
    }

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn human_strings_in_and_out() {
        let config = parse("wait = \"1m 30s\"\ncap = \"250ms\"").unwrap();
        assert_eq!(config.wait, Duration::from_secs(90));
        assert_eq!(config.cap, Some(Duration::from_millis(250)));
        assert_eq!(parse("wait = \"2s\"").unwrap().cap, None);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "wait": "1m 30s", "cap": "250ms" })
        );
        let none: Config = serde_json::from_str(r#"{"wait":"1s","cap":null}"#).unwrap();
        assert_eq!(none.cap, None);
    }

    #[test]
    fn a_bad_duration_shows_the_format() {
        let expected = "expected a duration such as \"250ms\" or \"2s\"";
        // A number without a unit, a typo in the unit, a bare number, a boolean: each says
        // what a duration looks like.
        for text in [
            "wait = \"300\"",
            "wait = \"3 parsecs\"",
            "wait = 300",
            "wait = true",
            "wait = \"1s\"\ncap = 5",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = parse("wait = \"300\"").unwrap_err();
        assert!(err.contains("\"300\""), "names the value: {err}");
    }
}
