//! Canonical JSON and sha256 in hex: the bytes every digest of this service is taken of,
//! so that anyone can recompute a digest from the data alone.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The same JSON with every object's keys in sorted order, serialized without whitespace.
pub fn to_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&sorted(value.clone())).unwrap_or_default()
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, self::sorted(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(self::sorted).collect())
        }
        other => other,
    }
}

/// Lowercase hex of sha256 over the parts, in order.
pub fn sha256_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_and_arrays_keep_their_order() {
        let value = serde_json::json!({"b": [{"z": 1, "a": 2}, 3], "a": {"y": null, "x": "é"}});
        assert_eq!(
            String::from_utf8(to_bytes(&value)).expect("utf-8"),
            r#"{"a":{"x":"é","y":null},"b":[{"a":2,"z":1},3]}"#
        );
    }

    /// A random JSON value, from a deterministic generator.
    fn value(next: &mut impl FnMut() -> u64, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        match next() % if depth == 0 { 4 } else { 6 } {
            0 => Value::Null,
            1 => Value::Bool(next().is_multiple_of(2)),
            2 => serde_json::json!((next() % 2_000_000) as f64 / 7.0 - 1000.0),
            3 => Value::String(
                (0..next() % 8)
                    .map(|_| char::from_u32((next() % 0x500) as u32).unwrap_or('x'))
                    .collect(),
            ),
            4 => Value::Array((0..next() % 4).map(|_| value(next, depth - 1)).collect()),
            _ => Value::Object(
                (0..next() % 4)
                    .map(|i| (format!("k{}{i}", next() % 5), value(next, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn canonical_bytes_are_stable_whatever_the_key_order() {
        let mut state = 0x0123_4567_89ab_cdef_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for _ in 0..2_000 {
            let v = value(&mut next, 4);
            let bytes = to_bytes(&v);
            // Parsed back and written again, the same bytes: what a verifier recomputes.
            let again: serde_json::Value =
                serde_json::from_slice(&bytes).expect("canonical JSON parses");
            assert_eq!(to_bytes(&again), bytes, "{v}");
            // Keys in reverse order hash the same.
            fn reversed(v: &serde_json::Value) -> serde_json::Value {
                match v {
                    serde_json::Value::Object(map) => {
                        let mut entries: Vec<_> = map.iter().collect();
                        entries.reverse();
                        serde_json::Value::Object(
                            entries
                                .into_iter()
                                .map(|(k, v)| (k.clone(), reversed(v)))
                                .collect(),
                        )
                    }
                    serde_json::Value::Array(items) => {
                        serde_json::Value::Array(items.iter().map(reversed).collect())
                    }
                    other => other.clone(),
                }
            }
            assert_eq!(to_bytes(&reversed(&v)), bytes);
        }
    }

    #[test]
    fn sha256_of_nothing_is_the_known_digest() {
        assert_eq!(
            sha256_hex([]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex([&b"ab"[..]]), sha256_hex([&b"a"[..], &b"b"[..]]));
    }
}
