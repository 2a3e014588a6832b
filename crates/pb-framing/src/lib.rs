//! The framing of the TCP link between the Processor Bridge and its client (reference §2.2,
//! contract §8.2 and §8.6): each message is a 4-byte unsigned length, then exactly that
//! many bytes (one UTF-8 JSON envelope). Big-endian (network order) by default,
//! little-endian by choice.
//!
//! [`FrameCodec`] is tokio-util's [`LengthDelimitedCodec`] with what the contract adds on
//! reading: a zero-length frame is reported as [`Frame::Empty`] (to be ignored), and a
//! frame longer than the maximum is never buffered whole: its first bytes come as
//! [`Frame::TooLong`] (so its header can perhaps be read and answered) and the rest is
//! skipped as it arrives, after which frames are read as before.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::length_delimited::LengthDelimitedCodecError;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// How many bytes of a frame's length field there are.
pub const LENGTH_BYTES: usize = 4;

/// The byte order of the length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Network byte order, the default.
    #[default]
    Big,
    Little,
}

impl ByteOrder {
    /// `big` or `little` (as configured).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "big" | "big-endian" | "network" => Some(Self::Big),
            "little" | "little-endian" => Some(Self::Little),
            _ => None,
        }
    }

    fn codec(self, max: usize) -> LengthDelimitedCodec {
        let mut builder = LengthDelimitedCodec::builder();
        builder
            .length_field_length(LENGTH_BYTES)
            .max_frame_length(max);
        match self {
            Self::Big => builder.big_endian(),
            Self::Little => builder.little_endian(),
        };
        builder.new_codec()
    }

    fn length(self, field: [u8; LENGTH_BYTES]) -> u32 {
        match self {
            Self::Big => u32::from_be_bytes(field),
            Self::Little => u32::from_le_bytes(field),
        }
    }
}

/// What reading the link yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One message.
    Message(Bytes),
    /// A frame of length zero, which carries nothing.
    Empty,
    /// A frame of `length` bytes, more than the maximum: `head` is its first bytes (at most
    /// [`FrameCodec::head_bytes`]); the rest is skipped.
    TooLong { length: u64, head: Bytes },
}

/// Reads [`Frame`]s, writes messages as frames.
#[derive(Debug)]
pub struct FrameCodec {
    order: ByteOrder,
    max: usize,
    head: usize,
    read: LengthDelimitedCodec,
    write: LengthDelimitedCodec,
    /// Bytes of a too long frame still to skip.
    skipping: u64,
}

impl FrameCodec {
    /// Frames in `order`, read up to `max` bytes long; of a longer one the first
    /// `min(max, 16 KiB)` bytes are kept. Written frames may be as long as the length field
    /// allows.
    pub fn new(order: ByteOrder, max: usize) -> Self {
        let max = max.min(u32::MAX as usize);
        Self {
            order,
            max,
            head: max.min(16 * 1024),
            read: order.codec(max),
            write: order.codec(u32::MAX as usize),
            skipping: 0,
        }
    }

    /// How many first bytes of a too long frame are kept.
    pub fn head_bytes(&self) -> usize {
        self.head
    }

    /// The longest frame read whole.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The codec refused the frame whose length field starts `src`: keep its head, skip the rest.
    fn too_long(&mut self, src: &mut BytesMut) -> Option<Frame> {
        let mut field = [0u8; LENGTH_BYTES];
        field.copy_from_slice(&src[..LENGTH_BYTES]);
        let length = u64::from(self.order.length(field));
        let head = self.head.min(length as usize);
        if src.len() < LENGTH_BYTES + head {
            src.reserve(LENGTH_BYTES + head - src.len());
            return None;
        }
        src.advance(LENGTH_BYTES);
        let head = src.split_to(head).freeze();
        self.skipping = length - head.len() as u64;
        self.skip(src);
        Some(Frame::TooLong { length, head })
    }

    /// Drop what is buffered of a too long frame's rest.
    fn skip(&mut self, src: &mut BytesMut) {
        let n = self.skipping.min(src.len() as u64);
        src.advance(n as usize);
        self.skipping -= n;
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        if self.skipping > 0 {
            self.skip(src);
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        match self.read.decode(src) {
            Ok(Some(frame)) if frame.is_empty() => Ok(Some(Frame::Empty)),
            Ok(Some(frame)) => Ok(Some(Frame::Message(frame.freeze()))),
            Ok(None) => Ok(None),
            Err(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>()) =>
            {
                Ok(self.too_long(src))
            }
            Err(e) => Err(e),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, message: Bytes, dst: &mut BytesMut) -> Result<(), io::Error> {
        self.write.encode(message, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(order: ByteOrder, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        FrameCodec::new(order, 1 << 20)
            .encode(Bytes::copy_from_slice(payload), &mut out)
            .unwrap();
        out.to_vec()
    }

    /// Feed `bytes` in chunks of `chunk`, collecting what is decoded.
    fn read_all(codec: &mut FrameCodec, bytes: &[u8], chunk: usize) -> Vec<Frame> {
        let mut buffer = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            buffer.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut buffer).unwrap() {
                out.push(frame);
            }
        }
        out
    }

    #[test]
    fn length_prefix_in_either_byte_order() {
        assert_eq!(frame(ByteOrder::Big, b"{}"), [0, 0, 0, 2, b'{', b'}']);
        assert_eq!(frame(ByteOrder::Little, b"{}"), [2, 0, 0, 0, b'{', b'}']);
        assert_eq!(ByteOrder::parse("LITTLE"), Some(ByteOrder::Little));
        assert_eq!(ByteOrder::parse("network"), Some(ByteOrder::Big));
        assert_eq!(ByteOrder::parse("middle"), None);
    }

    #[test]
    fn empty_and_too_long_frames_leave_the_stream_readable() {
        let mut bytes = frame(ByteOrder::Big, b"");
        let long = vec![b'x'; 100];
        bytes.extend(frame(ByteOrder::Big, &long));
        bytes.extend(frame(ByteOrder::Big, b"after"));
        let mut codec = FrameCodec::new(ByteOrder::Big, 40);
        assert_eq!(codec.head_bytes(), 40);
        for chunk in [1, 3, 7, 1000] {
            let mut codec = FrameCodec::new(ByteOrder::Big, 40);
            assert_eq!(
                read_all(&mut codec, &bytes, chunk),
                [
                    Frame::Empty,
                    Frame::TooLong {
                        length: 100,
                        head: Bytes::from(vec![b'x'; 40])
                    },
                    Frame::Message(Bytes::from_static(b"after")),
                ],
                "chunks of {chunk}"
            );
        }
        // Only the head of the long frame is ever held.
        let mut buffer = BytesMut::from(&frame(ByteOrder::Big, &vec![b'y'; 10_000])[..]);
        assert!(matches!(
            codec.decode(&mut buffer).unwrap(),
            Some(Frame::TooLong { length: 10_000, .. })
        ));
        assert!(buffer.is_empty());
        assert_eq!(codec.skipping, 0);
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_chunks_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            max in 0usize..80,
            little in any::<bool>(),
        ) {
            let order = if little { ByteOrder::Little } else { ByteOrder::Big };
            let mut codec = FrameCodec::new(order, max);
            let mut buffer = BytesMut::new();
            for piece in bytes.chunks(chunk) {
                buffer.extend_from_slice(piece);
                while let Ok(Some(frame)) = codec.decode(&mut buffer) {
                    if let Frame::Message(m) = &frame {
                        prop_assert!(m.len() <= max);
                    }
                }
            }
        }

        #[test]
        fn messages_round_trip(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..8),
            chunk in 1usize..32,
        ) {
            let bytes: Vec<u8> = messages.iter().flat_map(|m| frame(ByteOrder::Big, m)).collect();
            let mut codec = FrameCodec::new(ByteOrder::Big, 64);
            let read = read_all(&mut codec, &bytes, chunk);
            let want: Vec<Frame> = messages.iter().map(|m| Frame::Message(Bytes::copy_from_slice(m))).collect();
            prop_assert_eq!(read, want);
        }
    }
}
