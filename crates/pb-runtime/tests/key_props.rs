//! Property tests of the state store's key encoding, `kv::key` and `kv::unkey`: any parts
//! make a valid key-value key (only `[A-Za-z0-9-_=.]`, no empty token), distinct part
//! lists make distinct keys, a one-part key unkeys to its part, and `unkey` never panics.
//!
//! The oracles are the `kv` fuzz target's (`fuzz/src/kv.rs`); its committed seeds and
//! every crash it found are replayed here too ([`fuzz_inputs_replay`]).

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/kv.rs"]
mod kv;

use pb_runtime::kv::{key, unkey};
use proptest::collection::vec;
use proptest::prelude::*;

/// Any text, and text of the characters the encoding treats specially.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z_=.%5EF -]{0,6}"]
}

proptest! {
    #[test]
    fn keys_of_any_parts(parts in vec(part(), 1..5)) {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        kv::check_key(&parts);
    }

    #[test]
    fn one_part_keys_unkey_to_their_part(part in part()) {
        prop_assert_eq!(unkey(&key(&[&part])), part);
    }

    #[test]
    fn distinct_parts_make_distinct_keys(a in vec(part(), 1..4), b in vec(part(), 1..4)) {
        let key_of = |parts: &[String]| key(&parts.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(key_of(&a) == key_of(&b), a == b);
    }

    #[test]
    fn unkey_never_panics(text in prop_oneof![any::<String>(), "[=_.A-F0-9é]{0,12}"]) {
        kv::kv(text.as_bytes());
    }

    #[test]
    fn fuzz_inputs_never_panic(data in vec(any::<u8>(), 0..64)) {
        kv::kv(&data);
    }
}

/// The `kv` fuzz target's seeds and every crash its fuzzer found, through its oracle.
#[test]
fn fuzz_inputs_replay() {
    let inputs = corpus::inputs("kv");
    assert!(!inputs.is_empty(), "no seeds for the fuzz target kv");
    corpus::replay(&inputs, kv::kv);
}
