//! Property tests of the frame codec: any bytes in pieces cut anywhere read as a plain
//! reading of the whole stream says, in either byte order, never panicking and never
//! holding more than one frame; what it writes it reads back; a frame over the maximum is
//! reported with its length and first bytes and skipped, never held whole.
//!
//! The oracles are the `frames` fuzz target's (`fuzz/src/framing.rs`); its committed seeds
//! and every crash it found are replayed here too ([`fuzz_inputs_replay`]).

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/framing.rs"]
mod framing;

use bytes::{Bytes, BytesMut};
use pb_framing::{ByteOrder, Frame, FrameCodec};
use proptest::collection::vec;
use proptest::prelude::*;
use tokio_util::codec::Encoder;

fn order() -> impl Strategy<Value = ByteOrder> {
    prop_oneof![Just(ByteOrder::Big), Just(ByteOrder::Little)]
}

/// Cut points anywhere in a stream of up to `len` bytes.
fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    vec(0..=len, 0..12)
}

/// A frame's bytes: a length field in `order`, then `payload`.
fn framed(order: ByteOrder, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameCodec::new(order, 0)
        .encode(Bytes::copy_from_slice(payload), &mut out)
        .unwrap();
    out.to_vec()
}

/// Frames of any length around `max` (and empty ones), or raw bytes.
fn stream(order: ByteOrder, max: usize) -> impl Strategy<Value = Vec<u8>> {
    let frame = prop_oneof![
        3 => vec(any::<u8>(), 0..=max + max / 2 + 2).prop_map(move |p| framed(order, &p)),
        1 => vec(any::<u8>(), 0..8),
    ];
    vec(frame, 0..6).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn any_bytes_cut_anywhere(
        order in order(),
        max in 0usize..80,
        (bytes, cuts) in vec(any::<u8>(), 0..600).prop_flat_map(|b| { let n = b.len(); (Just(b), cuts(n)) }),
    ) {
        framing::check_stream(order, max, &bytes, &cuts);
    }

    #[test]
    fn frames_around_the_maximum_cut_anywhere(
        (order, max, stream, cuts) in (order(), 0usize..64).prop_flat_map(|(order, max)| {
            stream(order, max).prop_flat_map(move |s| {
                let n = s.len();
                (Just(order), Just(max), Just(s), cuts(n))
            })
        })
    ) {
        framing::check_stream(order, max, &stream, &cuts);
    }

    #[test]
    fn messages_round_trip(
        order in order(),
        (messages, cuts) in vec(vec(any::<u8>(), 0..64), 0..8).prop_flat_map(|m| {
            let n: usize = m.iter().map(|m| m.len() + 4).sum();
            (Just(m), cuts(n))
        }),
    ) {
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        framing::check_round_trip(order, &messages, &cuts);
    }

    #[test]
    fn fuzz_inputs_never_panic(data in vec(any::<u8>(), 0..300)) {
        framing::frames(&data);
    }
}

/// A frame far longer than the maximum (and than the 16 KiB head kept of it) arriving in
/// small pieces: reported once with its length and first 16 KiB, the rest skipped as it
/// comes, never held, and the next frame read as usual.
#[test]
fn a_huge_frame_is_reported_and_skipped_as_it_arrives() {
    let max = 64 * 1024;
    let huge = vec![b'x'; 3 * max];
    let mut stream = framed(ByteOrder::Big, &huge);
    stream.extend(framed(ByteOrder::Big, b"after"));
    let cuts: Vec<usize> = (1..stream.len() / 997).map(|i| i * 997).collect();
    let mut codec = FrameCodec::new(ByteOrder::Big, max);
    let frames = framing::read(&mut codec, &stream, &cuts);
    assert_eq!(
        frames,
        [
            Frame::TooLong {
                length: huge.len() as u64,
                head: Bytes::from(vec![b'x'; 16 * 1024]),
            },
            Frame::Message(Bytes::from_static(b"after")),
        ]
    );
}

/// The `frames` fuzz target's seeds and every crash its fuzzer found, through its oracle.
#[test]
fn fuzz_inputs_replay() {
    let inputs = corpus::inputs("frames");
    assert!(!inputs.is_empty(), "no seeds for the fuzz target frames");
    corpus::replay(&inputs, framing::frames);
}
