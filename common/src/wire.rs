//! Conversion between [`Outcome`] and its protobuf form.

use std::time::Duration;

use vantage_proto::v1;

use crate::outcome::{FailureClass, Outcome, Phases, Status};

/// Why a protobuf outcome could not be turned back into an [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The status field held no known status.
    #[error("outcome has no valid status (value {0})")]
    Status(i32),
    /// The class field held an unknown value.
    #[error("outcome has an unknown failure class (value {0})")]
    Class(i32),
    /// `details_json` was not a JSON object.
    #[error("outcome details are not a JSON object: {0}")]
    Details(String),
}

impl From<&Outcome> for v1::Outcome {
    fn from(o: &Outcome) -> Self {
        let status = match o.status {
            Status::Pass => v1::Status::Pass,
            Status::Warn => v1::Status::Warn,
            Status::Fail => v1::Status::Fail,
            Status::Error => v1::Status::Error,
        };
        let class = match o.class {
            None => v1::FailureClass::None,
            Some(FailureClass::Timeout) => v1::FailureClass::Timeout,
            Some(FailureClass::Refused) => v1::FailureClass::Refused,
            Some(FailureClass::Unreachable) => v1::FailureClass::Unreachable,
            Some(FailureClass::Dns) => v1::FailureClass::Dns,
            Some(FailureClass::Tls) => v1::FailureClass::Tls,
            Some(FailureClass::Protocol) => v1::FailureClass::Protocol,
            Some(FailureClass::Policy) => v1::FailureClass::Policy,
            Some(FailureClass::Listed) => v1::FailureClass::Listed,
            Some(FailureClass::Expiring) => v1::FailureClass::Expiring,
            Some(FailureClass::Expired) => v1::FailureClass::Expired,
            Some(FailureClass::Auth) => v1::FailureClass::Auth,
        };
        v1::Outcome {
            kind: o.kind.clone(),
            target: o.target.clone(),
            status: status as i32,
            class: class as i32,
            message: o.message.clone(),
            duration_ms: o.duration_ms,
            phases: o
                .phases
                .iter()
                .map(|(name, took)| v1::Phase {
                    name: name.to_owned(),
                    duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                })
                .collect(),
            details_json: serde_json::to_string(&o.details).unwrap_or_else(|_| "{}".into()),
        }
    }
}

impl TryFrom<v1::Outcome> for Outcome {
    type Error = WireError;

    fn try_from(p: v1::Outcome) -> Result<Self, WireError> {
        let status = match v1::Status::try_from(p.status) {
            Ok(v1::Status::Pass) => Status::Pass,
            Ok(v1::Status::Warn) => Status::Warn,
            Ok(v1::Status::Fail) => Status::Fail,
            Ok(v1::Status::Error) => Status::Error,
            Ok(v1::Status::Unspecified) | Err(_) => return Err(WireError::Status(p.status)),
        };
        let class = match v1::FailureClass::try_from(p.class) {
            Ok(v1::FailureClass::None) => None,
            Ok(v1::FailureClass::Timeout) => Some(FailureClass::Timeout),
            Ok(v1::FailureClass::Refused) => Some(FailureClass::Refused),
            Ok(v1::FailureClass::Unreachable) => Some(FailureClass::Unreachable),
            Ok(v1::FailureClass::Dns) => Some(FailureClass::Dns),
            Ok(v1::FailureClass::Tls) => Some(FailureClass::Tls),
            Ok(v1::FailureClass::Protocol) => Some(FailureClass::Protocol),
            Ok(v1::FailureClass::Policy) => Some(FailureClass::Policy),
            Ok(v1::FailureClass::Listed) => Some(FailureClass::Listed),
            Ok(v1::FailureClass::Expiring) => Some(FailureClass::Expiring),
            Ok(v1::FailureClass::Expired) => Some(FailureClass::Expired),
            Ok(v1::FailureClass::Auth) => Some(FailureClass::Auth),
            Err(_) => return Err(WireError::Class(p.class)),
        };
        let details = if p.details_json.is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&p.details_json).map_err(|e| WireError::Details(e.to_string()))?
        };
        let mut phases = Phases::default();
        for phase in &p.phases {
            phases.record(&phase.name, Duration::from_micros(phase.duration_us));
        }
        let mut outcome = Outcome::new(&p.kind, &p.target, status, class, p.message);
        outcome.duration_ms = p.duration_ms;
        outcome.phases = phases;
        outcome.details = details;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn outcome_survives_protobuf_round_trip() {
        let mut o = Outcome::new(
            "smtp",
            "mx.example.org:25",
            Status::Fail,
            Some(FailureClass::Policy),
            "STARTTLS not offered",
        );
        o.duration_ms = 42;
        o.phases.record("connect", Duration::from_micros(1500));
        o.phases.record("banner", Duration::from_micros(20));
        o.details
            .insert("banner".into(), serde_json::json!("220 hi"));

        let bytes = v1::Outcome::from(&o).encode_to_vec();
        let back = Outcome::try_from(v1::Outcome::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn unknown_status_is_refused() {
        let p = v1::Outcome {
            status: 99,
            ..Default::default()
        };
        assert!(matches!(Outcome::try_from(p), Err(WireError::Status(99))));
        let p = v1::Outcome {
            status: v1::Status::Pass as i32,
            class: 77,
            ..Default::default()
        };
        assert!(matches!(Outcome::try_from(p), Err(WireError::Class(77))));
    }
}
