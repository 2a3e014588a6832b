//! Oracles for the TCP link's frame codec, `pb_framing::FrameCodec`: a byte stream read
//! in pieces of any size gives the frames a plain reading of the whole stream gives
//! ([`expected`]), never an error, and never holds more than one frame's worth of it; what
//! it writes it reads back.

use bytes::{Bytes, BytesMut};
use pb_framing::{ByteOrder, Frame, FrameCodec, LENGTH_BYTES};
use tokio_util::codec::{Decoder, Encoder};

/// One fuzz input: a mode byte (bit 0: little-endian; bit 1: the round trip instead), two
/// bytes of the maximum frame length (little-endian, modulo 4096), a count of piece sizes
/// (modulo 9) and those sizes; the rest is the stream, or for the round trip the messages
/// (split at 0xFF bytes).
pub fn frames(data: &[u8]) {
    let [mode, low, high, count, rest @ ..] = data else {
        return;
    };
    let order = if mode & 1 == 0 {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    let max = usize::from(u16::from_le_bytes([*low, *high])) % 4096;
    let (sizes, stream) = rest.split_at(usize::from(count % 9).min(rest.len()));
    let pieces = pieces(stream.len(), sizes);
    if mode & 2 == 0 {
        check_stream(order, max, stream, &pieces);
    } else {
        let messages: Vec<&[u8]> = stream.split(|b| *b == 0xFF).collect();
        check_round_trip(order, &messages, &pieces);
    }
}

/// Cut points of a stream of `len` bytes: pieces of the given sizes in turn (a size 0
/// counts as 1; none: the whole stream at once).
pub fn pieces(len: usize, sizes: &[u8]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        at += usize::from(*size).max(1);
        if at >= len {
            break;
        }
        cuts.push(at);
    }
    cuts
}

/// Read `stream` cut at `cuts` (positions, in any order) with a codec of `order` and `max`:
/// the frames [`expected`] gives, no error, and after each piece less than a length field
/// and one maximum frame held.
pub fn check_stream(order: ByteOrder, max: usize, stream: &[u8], cuts: &[usize]) {
    let mut codec = FrameCodec::new(order, max);
    let frames = read(&mut codec, stream, cuts);
    assert_eq!(
        frames,
        expected(order, codec.max(), codec.head_bytes(), stream)
    );
}

/// Feed `stream` to `codec` cut at `cuts`; every frame read, the buffer checked after each
/// piece.
pub fn read(codec: &mut FrameCodec, stream: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| (*c).min(stream.len())).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for to in cuts {
        buffer.extend_from_slice(&stream[from..to]);
        from = to;
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => panic!("reading frames failed: {e}"),
            }
        }
        assert!(
            buffer.len() < LENGTH_BYTES + codec.max(),
            "{} bytes held, more than a frame of at most {}",
            buffer.len(),
            codec.max()
        );
    }
    frames
}

/// The frames of `stream` read whole by the contract's rules: a 4-byte length, then that
/// many bytes; zero is [`Frame::Empty`]; over `max` is [`Frame::TooLong`] with its first
/// `head` bytes (once they are there), the rest skipped; a frame cut off by the stream's
/// end is not read.
pub fn expected(order: ByteOrder, max: usize, head: usize, stream: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(field) = stream.get(at..at + LENGTH_BYTES) {
        let field: [u8; LENGTH_BYTES] = field.try_into().expect("four bytes");
        let length = match order {
            ByteOrder::Big => u32::from_be_bytes(field),
            ByteOrder::Little => u32::from_le_bytes(field),
        } as usize;
        let body = &stream[at + LENGTH_BYTES..];
        if length == 0 {
            frames.push(Frame::Empty);
        } else if length <= max {
            let Some(message) = body.get(..length) else {
                break;
            };
            frames.push(Frame::Message(Bytes::copy_from_slice(message)));
        } else {
            let Some(first) = body.get(..head.min(length)) else {
                break;
            };
            frames.push(Frame::TooLong {
                length: length as u64,
                head: Bytes::copy_from_slice(first),
            });
        }
        at += LENGTH_BYTES + length;
    }
    frames
}

/// `messages` written as frames in `order` and read back, cut at `cuts`, with a maximum of
/// the longest of them: the same messages (an empty one as [`Frame::Empty`]).
pub fn check_round_trip(order: ByteOrder, messages: &[&[u8]], cuts: &[usize]) {
    let longest = messages.iter().map(|m| m.len()).max().unwrap_or(0);
    let mut codec = FrameCodec::new(order, longest);
    let mut stream = BytesMut::new();
    for message in messages {
        codec
            .encode(Bytes::copy_from_slice(message), &mut stream)
            .expect("a message is written");
    }
    let frames = read(&mut codec, &stream, cuts);
    let want: Vec<Frame> = messages
        .iter()
        .map(|m| match m.len() {
            0 => Frame::Empty,
            _ => Frame::Message(Bytes::copy_from_slice(m)),
        })
        .collect();
    assert_eq!(frames, want);
}
