//! Comparing JSON values the way a round trip through serde_json can keep them.
//!
//! serde_json, as the workspace builds it (without its `float_roundtrip` feature), may read a
//! float back one unit in the last place away from the one it wrote (about a third of all
//! bit patterns; never short decimals such as `0.5` or `12.25`). Everything else must come
//! back exactly, so the oracles compare with [`same`]: numbers by value, floats within a
//! relative 1e-12, the rest exactly.

use serde_json::Value;

/// Whether `a` and `b` are the same JSON value, floats within a relative 1e-12.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => close(x, y),
                    _ => false,
                }
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
}

/// [`same`] on two serialisable values, as JSON.
pub fn same_as_json<A: serde::Serialize, B: serde::Serialize>(a: &A, b: &B) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => same(&a, &b),
        _ => false,
    }
}

/// Whatever `T` reads from `payload` it writes so that it reads back the same
/// ([`reads_back`]); the value read, if any.
pub fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(payload: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(payload).ok()?;
    reads_back(&value);
    Some(value)
}

/// `value` written as JSON reads back as the same value (as JSON, [`same`]).
pub fn reads_back<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let bytes = serde_json::to_vec(value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} written again does not read: {e}",
            std::any::type_name::<T>()
        )
    });
    assert!(
        same_as_json(value, &again),
        "{} changed on its way through JSON",
        std::any::type_name::<T>()
    );
}

/// A fuzz input's value: the bytes as JSON, else the text they hold as a JSON string.
pub fn value_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A fuzz input read as a change to a valid value: its first byte says how many path bytes
/// follow (at most four), the rest is the new value ([`value_of`]; nothing means "remove").
pub fn change_of(data: &[u8]) -> (&[u8], Option<Value>) {
    let Some((&steps, rest)) = data.split_first() else {
        return (&[], None);
    };
    let (path, value) = rest.split_at(usize::from(steps % 5).min(rest.len()));
    (path, (!value.is_empty()).then(|| value_of(value)))
}

/// Replace the node of `node` that `path` leads to with `value`, or remove it from its
/// object or array when `value` is `None`. Each path byte picks a member (by position,
/// modulo one more than their number: the extra one stops at the node reached).
pub fn mutate(node: &mut Value, path: &[u8], value: Option<Value>) {
    if let Some((&step, rest)) = path.split_first() {
        match node {
            Value::Object(map) if !map.is_empty() => {
                let i = usize::from(step) % (map.len() + 1);
                if let Some(key) = map.keys().nth(i).cloned() {
                    if rest.is_empty() && value.is_none() {
                        map.remove(&key);
                        return;
                    }
                    if let Some(child) = map.get_mut(&key) {
                        return mutate(child, rest, value);
                    }
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let i = usize::from(step) % (items.len() + 1);
                if i < items.len() {
                    if rest.is_empty() && value.is_none() {
                        items.remove(i);
                        return;
                    }
                    return mutate(&mut items[i], rest, value);
                }
            }
            _ => {}
        }
    }
    if let Some(value) = value {
        *node = value;
    }
}
