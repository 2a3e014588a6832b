//! Bounds on what a message may carry, so that no input can make an answer, a key, a
//! subject or a record larger than NATS accepts (contract §5.1, §5.2). Each limit has a
//! default and an environment variable that sets it; input past a limit is answered
//! `FAILURE` naming the limit ([`OverLimit`]).
//!
//! Error messages quote input through [`excerpt`]: never more than a short prefix.

use std::borrow::Cow;
use std::fmt;

use crate::Target;

/// One of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// A command's whole payload, in bytes.
    Payload,
    /// The header's `requestId`, in bytes.
    RequestId,
    /// The header's `name`, in bytes.
    Name,
    /// One segment of a target (an id), in bytes.
    Segment,
    /// A whole target, in bytes.
    Target,
    /// The number of segments of a target.
    Segments,
    /// One interaction's `interaction-data`, as JSON, in bytes.
    InteractionData,
    /// One agent's saved record, as JSON, in bytes.
    Record,
}

impl Limit {
    pub const ALL: [Limit; 8] = [
        Limit::Payload,
        Limit::RequestId,
        Limit::Name,
        Limit::Segment,
        Limit::Target,
        Limit::Segments,
        Limit::InteractionData,
        Limit::Record,
    ];

    /// The environment variable that sets it.
    pub fn var(self) -> &'static str {
        match self {
            Limit::Payload => "PB_MAX_PAYLOAD_BYTES",
            Limit::RequestId => "PB_MAX_REQUEST_ID_BYTES",
            Limit::Name => "PB_MAX_NAME_BYTES",
            Limit::Segment => "PB_MAX_TARGET_SEGMENT_BYTES",
            Limit::Target => "PB_MAX_TARGET_BYTES",
            Limit::Segments => "PB_MAX_TARGET_SEGMENTS",
            Limit::InteractionData => "PB_MAX_INTERACTION_DATA_BYTES",
            Limit::Record => "PB_MAX_AGENT_RECORD_BYTES",
        }
    }

    /// What it bounds, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Limit::Payload => "the payload",
            Limit::RequestId => "the requestId",
            Limit::Name => "the name",
            Limit::Segment => "a target segment",
            Limit::Target => "the target",
            Limit::Segments => "the target",
            Limit::InteractionData => "the interaction-data",
            Limit::Record => "the agent's record",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Limit::Segments => "segments",
            _ => "bytes",
        }
    }
}

/// Input past a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} has {found} {unit}, over the limit of {max} ({var})",
    what = .limit.what(),
    unit = .limit.unit(),
    var = .limit.var()
)]
pub struct OverLimit {
    pub limit: Limit,
    pub found: usize,
    pub max: usize,
}

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub payload: usize,
    pub request_id: usize,
    pub name: usize,
    pub segment: usize,
    pub target: usize,
    pub segments: usize,
    pub interaction_data: usize,
    pub record: usize,
}

impl Default for Limits {
    /// Generous for every real command (a GUID is 38 bytes, the longest name 40, attached
    /// data 16 KiB as Genesys allows by default) and far inside NATS's 1 MiB payload.
    fn default() -> Self {
        Self {
            payload: 64 * 1024,
            request_id: 256,
            name: 128,
            segment: 128,
            target: 512,
            segments: 16,
            interaction_data: 16 * 1024,
            record: 256 * 1024,
        }
    }
}

impl Limits {
    /// The value of one limit.
    pub fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::Payload => self.payload,
            Limit::RequestId => self.request_id,
            Limit::Name => self.name,
            Limit::Segment => self.segment,
            Limit::Target => self.target,
            Limit::Segments => self.segments,
            Limit::InteractionData => self.interaction_data,
            Limit::Record => self.record,
        }
    }

    /// Set one limit.
    pub fn set(&mut self, limit: Limit, value: usize) {
        let field = match limit {
            Limit::Payload => &mut self.payload,
            Limit::RequestId => &mut self.request_id,
            Limit::Name => &mut self.name,
            Limit::Segment => &mut self.segment,
            Limit::Target => &mut self.target,
            Limit::Segments => &mut self.segments,
            Limit::InteractionData => &mut self.interaction_data,
            Limit::Record => &mut self.record,
        };
        *field = value;
    }

    /// `Err` when `found` is past `limit`.
    pub fn check(&self, limit: Limit, found: usize) -> Result<(), OverLimit> {
        let max = self.get(limit);
        if found > max {
            Err(OverLimit { limit, found, max })
        } else {
            Ok(())
        }
    }

    /// A target's length, segment count and each segment's length.
    pub fn check_target(&self, target: &Target) -> Result<(), OverLimit> {
        let target = target.as_str();
        self.check(Limit::Target, target.len())?;
        let mut segments = 0;
        for segment in target.split('.') {
            segments += 1;
            self.check(Limit::Segment, segment.len())?;
        }
        self.check(Limit::Segments, segments)
    }
}

/// How many bytes of a quoted input an error message shows.
pub(crate) const EXCERPT_BYTES: usize = 48;

/// How many bytes of a reason (a message that may itself quote input) are shown.
pub(crate) const REASON_BYTES: usize = 200;

/// `text` as an error message may quote it: whole when short, else its first
/// [`EXCERPT_BYTES`] (on a character boundary) and its length.
pub(crate) fn excerpt(text: &str) -> Cow<'_, str> {
    shorten(text, EXCERPT_BYTES)
}

/// `text` whole when it has at most `max` bytes, else its first `max` (on a character
/// boundary), `…` and its length.
pub(crate) fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// [`excerpt`] as a `Display` value, for `format!` arguments and log fields.
#[derive(Debug)]
pub struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&excerpt(self.0))
    }
}

/// A reason shortened to [`REASON_BYTES`], as a `Display` value.
#[derive(Debug)]
pub(crate) struct Reason<'a>(pub &'a str);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shorten(self.0, REASON_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_limit_names_the_limit_and_its_variable() {
        let limits = Limits::default();
        assert!(limits.check(Limit::RequestId, 256).is_ok());
        let e = limits.check(Limit::RequestId, 257).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the requestId has 257 bytes, over the limit of 256 (PB_MAX_REQUEST_ID_BYTES)"
        );
        let deep = Target::new(vec!["a"; 17].join(".")).unwrap();
        assert_eq!(
            limits.check_target(&deep).unwrap_err().to_string(),
            "the target has 17 segments, over the limit of 16 (PB_MAX_TARGET_SEGMENTS)"
        );
        let wide = Target::new(format!("s.{}", "x".repeat(129))).unwrap();
        assert_eq!(
            limits.check_target(&wide).unwrap_err().limit,
            Limit::Segment
        );
        let mut set = limits;
        for limit in Limit::ALL {
            set.set(limit, 7);
            assert_eq!(set.get(limit), 7);
        }
    }

    #[test]
    fn excerpts_are_short_and_cut_on_a_character() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1000);
        let shown = excerpt(&long);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.ends_with("… (2000 bytes)"), "{shown}");
        assert_eq!(Excerpt("x").to_string(), "x");
        assert!(Reason(&long).to_string().len() < REASON_BYTES + 20);
    }
}
