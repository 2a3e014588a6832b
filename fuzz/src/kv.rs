//! Oracles for the state store's key encoding, `pb_runtime::kv::{key, unkey}`.

use pb_runtime::kv::{key, unkey};

/// Bytes a key may hold: what JetStream accepts in a key-value key
/// (`[-/_=.A-Za-z0-9]`), less `/`.
pub fn key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_=.".contains(&byte)
}

/// One fuzz input: [`unkey`] of its text, then [`check_key`] of its text's parts split at
/// NUL characters.
pub fn kv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    unkey(&text);
    let parts: Vec<&str> = text.split('\0').collect();
    check_key(&parts);
}

/// The key of `parts` (at least one): a valid key-value key (only [`key_byte`]s, no empty
/// token) at most three bytes per byte of a part (one for an empty part) and the dots
/// between them, what the limits on keys count with; the parts can be read back from it
/// ([`parts_of`]: so distinct part lists give distinct keys), and [`unkey`] reads it as the
/// parts joined by `.`.
pub fn check_key(parts: &[&str]) {
    let made = key(parts);
    let most: usize = parts.iter().map(|p| (3 * p.len()).max(1)).sum::<usize>() + parts.len() - 1;
    assert!(
        made.len() <= most,
        "{parts:?} made a key of {} bytes",
        made.len()
    );
    assert!(
        made.bytes().all(key_byte),
        "{parts:?} made the key {made:?}"
    );
    assert!(
        !made.split('.').any(str::is_empty),
        "{parts:?} made the key {made:?}"
    );
    assert_eq!(
        parts_of(&made),
        parts,
        "the key {made:?} does not tell its parts"
    );
    assert_eq!(unkey(&made), parts.join("."));
}

/// The parts of a key made by `key`, read independently of `unkey`: tokens split at `.`,
/// `_` an empty part, `=XX` a byte.
pub fn parts_of(key: &str) -> Vec<String> {
    key.split('.')
        .map(|token| {
            if token == "_" {
                return String::new();
            }
            let raw = token.as_bytes();
            let mut bytes = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'=' {
                    let hex = raw.get(i + 1..i + 3).expect("`=` and two hex digits");
                    let hex = std::str::from_utf8(hex).expect("two hex digits");
                    bytes.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                    i += 3;
                } else {
                    bytes.push(raw[i]);
                    i += 1;
                }
            }
            String::from_utf8(bytes).expect("a key's part is UTF-8")
        })
        .collect()
}
