//! Inspect writes non-finite floats as the bare constants `NaN`, `Infinity` and
//! `-Infinity` (Python's JSON dialect, `ser_json_inf_nan="constants"`), which strict JSON
//! has no place for. [`Constants`] passes a stream through, turning each of them, outside
//! strings, into `null`; everything else, strings included, goes through as it was.

use std::io::{BufRead, Read};

/// What follows the first byte of each constant.
const NAN: &[u8] = b"aN";
const INFINITY: &[u8] = b"nfinity";

pub(crate) struct Constants<R> {
    inner: R,
    in_string: bool,
    escaped: bool,
    /// A `-` outside a string, held until the next byte says whether `-Infinity` begins.
    minus: bool,
    /// The rest of a constant being passed over.
    skip: &'static [u8],
    /// Bytes made but not yet handed out.
    out: Vec<u8>,
    at: usize,
}

impl<R: BufRead> Constants<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            in_string: false,
            escaped: false,
            minus: false,
            skip: &[],
            out: Vec::new(),
            at: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        if let Some((&next, rest)) = self.skip.split_first() {
            if byte == next {
                self.skip = rest;
                return;
            }
            // Not the constant after all: the JSON is broken, and the parser will say so.
            self.skip = &[];
        }
        if self.in_string {
            self.out.push(byte);
            match (self.escaped, byte) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        if std::mem::take(&mut self.minus) {
            if byte == b'I' {
                self.out.extend_from_slice(b"null");
                self.skip = INFINITY;
                return;
            }
            self.out.push(b'-');
        }
        match byte {
            b'N' => {
                self.out.extend_from_slice(b"null");
                self.skip = NAN;
            }
            b'I' => {
                self.out.extend_from_slice(b"null");
                self.skip = INFINITY;
            }
            b'-' => self.minus = true,
            b'"' => {
                self.in_string = true;
                self.out.push(byte);
            }
            _ => self.out.push(byte),
        }
    }
}

impl<R: BufRead> Read for Constants<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.out.len() {
            self.out.clear();
            self.at = 0;
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                if std::mem::take(&mut self.minus) {
                    self.out.push(b'-');
                    break;
                }
                return Ok(0);
            }
            let chunk = chunk.to_vec();
            self.inner.consume(chunk.len());
            for byte in chunk {
                self.push(byte);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(text: &str, chunk: usize) -> String {
        // A reader that hands out `chunk` bytes at a time, so constants straddle reads.
        let reader = std::io::BufReader::with_capacity(chunk, text.as_bytes());
        let mut out = String::new();
        Constants::new(reader)
            .read_to_string(&mut out)
            .expect("read");
        out
    }

    #[test]
    fn constants_outside_strings_become_null_and_strings_stay_as_they_were() {
        let text = r#"{"a": NaN, "b": [Infinity, -Infinity, -1.5e-3], "c": "NaN \"Infinity\" -I", "d": -2}"#;
        let want =
            r#"{"a": null, "b": [null, null, -1.5e-3], "c": "NaN \"Infinity\" -I", "d": -2}"#;
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(through(text, chunk), want, "chunk {chunk}");
        }
        let parsed: serde_json::Value = serde_json::from_str(&through(text, 5)).expect("JSON");
        assert_eq!(parsed["a"], serde_json::Value::Null);
        assert_eq!(parsed["c"], "NaN \"Infinity\" -I");
    }

    #[test]
    fn a_backslash_at_the_end_of_a_string_does_not_keep_it_open() {
        let text = r#"["a\\", NaN]"#;
        assert_eq!(through(text, 1), r#"["a\\", null]"#);
    }

    #[test]
    fn a_trailing_minus_is_kept_for_the_parser_to_refuse() {
        assert_eq!(through("[1, -", 2), "[1, -");
        assert!(serde_json::from_str::<serde_json::Value>(&through("[Nope]", 2)).is_err());
    }
}
