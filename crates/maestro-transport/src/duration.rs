//! Go duration strings in broker config files (sdk-go keys such as `keepAlive: 60s`,
//! `receiveSettings.maxExtension: 10m`): parsing, formatting and the serde adapters every
//! broker's configuration uses, so a Go Maestro config file reads the same on each backend.

use std::time::Duration;

use serde::Deserialize;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go duration string (`time.ParseDuration`: `"1h2m3.5s"`, `"300ms"`, units `ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h`) or a bare number of seconds. Negative durations are refused.
///
/// # Errors
/// [`DurationError`] for an empty string, a missing or unknown unit, or a bad number.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_owned(), reason };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| err("out of range or negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().map_err(|_| err("expected a number"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    Duration::try_from_secs_f64(total / 1e9).map_err(|_| err("out of range"))
}

/// Formats a duration as a Go duration string that [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Number(f64),
}

impl RawDuration {
    fn into_duration<E: serde::de::Error>(self) -> Result<Duration, E> {
        match self {
            RawDuration::Text(s) => parse_duration(&s).map_err(E::custom),
            RawDuration::Number(n) => Duration::try_from_secs_f64(n).map_err(E::custom),
        }
    }
}

/// `#[serde(with = "maestro_transport::duration::go")]`: a [`Duration`] as a Go duration
/// string (a number is read as seconds).
pub mod go {
    use super::{Deserialize, Duration, RawDuration, format_duration};

    /// Writes the Go duration string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Reads a Go duration string or a number of seconds.
    ///
    /// # Errors
    /// A bad duration, named in the message.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        RawDuration::deserialize(d)?.into_duration()
    }
}

/// `#[serde(with = "maestro_transport::duration::go_opt")]`: an optional [`go`] duration.
pub mod go_opt {
    use super::{Deserialize, Duration, RawDuration, format_duration};

    /// Writes the Go duration string, or none.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional Go duration string or number of seconds.
    ///
    /// # Errors
    /// A bad duration, named in the message.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<RawDuration>::deserialize(d)?.map(RawDuration::into_duration).transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_durations_round_trip() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "10x", "-1s", "5m3", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [Duration::from_secs(60), Duration::from_millis(1500), Duration::from_nanos(7)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
