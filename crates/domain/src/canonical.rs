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

    #[test]
    fn sha256_of_nothing_is_the_known_digest() {
        assert_eq!(
            sha256_hex([]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex([&b"ab"[..]]), sha256_hex([&b"a"[..], &b"b"[..]]));
    }
}
