//! Destination targets (contract §3, §4) and their subject-token codec.
//!
//! A target is a dot-separated chain of non-empty segments, for example `PB1.CONTROL` or
//! `s-42.g1.c7`. In a subject each segment becomes one token; inside a token every byte a
//! NATS token cannot hold or that NATS reserves (space, control characters, DEL, `*`, `>`),
//! `%` itself and every byte of a non-ASCII character is written `%XX` (upper-case hex).
//! The encoding is canonical, so subject and target map one to one: the decoder refuses
//! lower-case hex, a `%` that is not followed by two hex digits and any byte that the
//! encoder would have escaped.

use std::fmt;

use crate::limits::Excerpt;

/// Why a string is not a valid target or target subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target is empty")]
    Empty,
    #[error(
        "target `{}` has an empty segment at position {position}",
        Excerpt(.target)
    )]
    EmptySegment { target: String, position: usize },
    #[error(
        "id `{}` cannot be a target segment: it must be non-empty and contain no `.`",
        Excerpt(.0)
    )]
    BadSegment(String),
    #[error(transparent)]
    OverLimit(#[from] crate::limits::OverLimit),
    #[error(
        "subject token `{}` is not a canonical percent-encoding: {reason}",
        Excerpt(.token)
    )]
    BadEncoding { token: String, reason: &'static str },
}

/// A validated destination target.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(String);

impl Target {
    /// Parse a target as it appears in a header: non-empty, no empty segment.
    pub fn new(target: impl Into<String>) -> Result<Self, TargetError> {
        let target = target.into();
        if target.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(position) = target.split('.').position(str::is_empty) {
            return Err(TargetError::EmptySegment { target, position });
        }
        Ok(Self(target))
    }

    /// The control target of a processor: `{Processor_Name}.CONTROL`.
    pub fn control(processor: &str) -> Result<Self, TargetError> {
        Self::new(format!("{processor}.CONTROL"))
    }

    /// The target of a child destination: this target with `id` appended as a segment.
    pub fn child(&self, id: &str) -> Result<Self, TargetError> {
        if id.is_empty() || id.contains('.') {
            return Err(TargetError::BadSegment(id.to_owned()));
        }
        Ok(Self(format!("{}.{id}", self.0)))
    }

    /// [`Target::child`], within `limits` (the length of the id and of the whole target,
    /// and the number of segments).
    pub fn child_within(&self, id: &str, limits: &crate::Limits) -> Result<Self, TargetError> {
        let child = self.child(id)?;
        limits.check_target(&child)?;
        Ok(child)
    }

    /// The session a destination of `kind` with this target belongs to (contract §4), or
    /// `None` for the control or a target too short for its kind. Session targets may hold
    /// dots: the segments below the session are counted from the end.
    pub fn session_of(&self, kind: crate::Kind) -> Option<Target> {
        let below = kind.below_session()?;
        let mut end = self.0.len();
        for _ in 0..below {
            end = self.0[..end].rfind('.')?;
        }
        (end > 0).then(|| Self(self.0[..end].to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The target as subject tokens (each segment percent-encoded, joined by `.`).
    pub fn to_subject_tokens(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for byte in self.0.bytes() {
            if byte == b'.' {
                out.push('.');
            } else {
                push_encoded(&mut out, byte);
            }
        }
        out
    }

    /// Decode subject tokens (the part of a subject after the kind) back to a target.
    pub fn from_subject_tokens(tokens: &str) -> Result<Self, TargetError> {
        let mut bytes = Vec::with_capacity(tokens.len());
        for token in tokens.split('.') {
            if token.is_empty() {
                return Err(TargetError::EmptySegment {
                    target: tokens.to_owned(),
                    position: bytes.iter().filter(|b| **b == b'.').count(),
                });
            }
            if !bytes.is_empty() {
                bytes.push(b'.');
            }
            decode_token_bytes(token, &mut bytes)?;
        }
        if bytes.is_empty() {
            return Err(TargetError::Empty);
        }
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|_| TargetError::BadEncoding {
                token: tokens.to_owned(),
                reason: "the decoded bytes are not UTF-8",
            })
    }
}

const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F',
];

/// Encode any string as one subject token with the same percent-encoding, `.` included
/// (written `%2E`); for ids that are not target segments, such as CTI agent ids.
pub fn encode_token(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte == b'.' {
            out.push_str("%2E");
        } else {
            push_encoded(&mut out, byte);
        }
    }
    out
}

/// Decode a token written by [`encode_token`].
pub fn decode_token(token: &str) -> Result<String, TargetError> {
    let mut bytes = Vec::with_capacity(token.len());
    for (i, part) in token.split("%2E").enumerate() {
        if i > 0 {
            bytes.push(b'.');
        }
        decode_token_bytes(part, &mut bytes)?;
    }
    String::from_utf8(bytes).map_err(|_| TargetError::BadEncoding {
        token: token.to_owned(),
        reason: "the decoded bytes are not UTF-8",
    })
}

fn push_encoded(out: &mut String, byte: u8) {
    if needs_escape(byte) {
        out.push('%');
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0F)]);
    } else {
        out.push(char::from(byte));
    }
}

/// Bytes written `%XX` inside a token.
fn needs_escape(byte: u8) -> bool {
    byte <= b' ' || byte >= 0x7F || matches!(byte, b'*' | b'>' | b'%')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_token_bytes(token: &str, out: &mut Vec<u8>) -> Result<(), TargetError> {
    let bad = |reason| TargetError::BadEncoding {
        token: token.to_owned(),
        reason,
    };
    let raw = token.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(bad("`%` must be followed by two upper-case hex digits"));
            };
            let decoded = (hi << 4) | lo;
            if !needs_escape(decoded) {
                return Err(bad("an escaped byte that needs no escape"));
            }
            out.push(decoded);
            i += 3;
        } else if needs_escape(byte) {
            return Err(bad("a byte that must be escaped appears raw"));
        } else {
            out.push(byte);
            i += 1;
        }
    }
    Ok(())
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({:?})", self.0)
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contract_examples() {
        let t = Target::new("Main PB.CONTROL").unwrap();
        assert_eq!(t.to_subject_tokens(), "Main%20PB.CONTROL");
        assert_eq!(Target::from_subject_tokens("Main%20PB.CONTROL").unwrap(), t);
        assert_eq!(
            Target::new("s-42.g1.c7").unwrap().to_subject_tokens(),
            "s-42.g1.c7"
        );
    }

    #[test]
    fn escapes_reserved_and_non_ascii_bytes() {
        let t = Target::new("a*b>c%d\te\u{7f}.é").unwrap();
        assert_eq!(t.to_subject_tokens(), "a%2Ab%3Ec%25d%09e%7F.%C3%A9");
    }

    #[test]
    fn rejects_bad_targets() {
        assert_eq!(Target::new(""), Err(TargetError::Empty));
        assert!(matches!(
            Target::new("a..b"),
            Err(TargetError::EmptySegment { position: 1, .. })
        ));
        assert!(matches!(
            Target::new(".a"),
            Err(TargetError::EmptySegment { position: 0, .. })
        ));
        assert!(matches!(
            Target::new("a."),
            Err(TargetError::EmptySegment { position: 1, .. })
        ));
    }

    #[test]
    fn rejects_non_canonical_tokens() {
        for bad in [
            "a%2", "a%2a", "a%zz", "a%41", "a b", "a*", "a>", "%FF", "", "a..b", "a.",
        ] {
            assert!(
                Target::from_subject_tokens(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn single_tokens_escape_the_dot() {
        assert_eq!(encode_token("a.b c"), "a%2Eb%20c");
        assert_eq!(encode_token("1001"), "1001");
        assert_eq!(encode_token(""), "");
        for raw in ["a.b c", "1001", "é*>%", "..", ""] {
            assert_eq!(decode_token(&encode_token(raw)).unwrap(), raw);
        }
        assert!(decode_token("a%2").is_err());
    }

    #[test]
    fn the_session_of_a_destination() {
        use crate::Kind;
        let t = |s: &str| Target::new(s).unwrap();
        let channel = t("a.b.g1.c1");
        assert_eq!(channel.session_of(Kind::Channel), Some(t("a.b")));
        assert_eq!(channel.session_of(Kind::ChannelGroup), Some(t("a.b.g1")));
        assert_eq!(channel.session_of(Kind::Session), Some(channel.clone()));
        assert_eq!(t("g1.c1").session_of(Kind::Channel), None);
        assert_eq!(
            t("s.g1.c1.i1.v1").session_of(Kind::Conversation),
            Some(t("s"))
        );
        assert_eq!(t("PB1.CONTROL").session_of(Kind::Control), None);
    }

    #[test]
    fn children() {
        let s = Target::new("s-42").unwrap();
        let g = s.child("g1").unwrap();
        assert_eq!(g.as_str(), "s-42.g1");
        assert!(s.child("a.b").is_err());
        assert!(s.child("").is_err());
    }

    fn segment() -> impl Strategy<Value = String> {
        // Any characters but the separator, including spaces, wildcards, `%` and non-ASCII.
        proptest::collection::vec(any::<char>().prop_filter("no dot", |c| *c != '.'), 1..12)
            .prop_map(|cs| cs.into_iter().collect())
    }

    fn target() -> impl Strategy<Value = Target> {
        proptest::collection::vec(segment(), 1..5)
            .prop_map(|segs| Target::new(segs.join(".")).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(t in target()) {
            let tokens = t.to_subject_tokens();
            prop_assert_eq!(Target::from_subject_tokens(&tokens).unwrap(), t);
        }

        #[test]
        fn tokens_are_valid_nats_tokens(t in target()) {
            let tokens = t.to_subject_tokens();
            prop_assert_eq!(tokens.split('.').count(), t.as_str().split('.').count());
            for token in tokens.split('.') {
                prop_assert!(!token.is_empty());
                prop_assert!(token.bytes().all(|b| b > b' ' && b < 0x7F && b != b'*' && b != b'>'));
            }
        }

        #[test]
        fn decoding_is_canonical(s in "[ -~]{1,20}") {
            // Whatever decodes must encode back to the very same tokens.
            if let Ok(t) = Target::from_subject_tokens(&s) {
                prop_assert_eq!(t.to_subject_tokens(), s);
            }
        }
    }
}
