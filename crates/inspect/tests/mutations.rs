//! Whatever bytes arrive, the reader answers a log or an error, never a panic: every
//! fixture, mutated thousands of times (bytes flipped, cut, spliced), deterministically.

use std::io::Cursor;
use std::path::PathBuf;

use jointeval_inspect::{Limits, read};

/// xorshift64*: the same sequence on every run, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(4) {
            0 => {
                let i = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ => {
                let from = rng.below(bytes.len());
                let len = rng.below(64).min(bytes.len() - from.min(bytes.len()));
                let chunk: Vec<u8> = bytes[from..from + len].to_vec();
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, chunk);
            }
        }
    }
    bytes
}

#[test]
fn mutated_logs_never_panic_the_reader() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/inspect");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let limits = Limits {
        max_expanded: 64 << 20,
        ..Limits::default()
    };
    let mut read_ok = 0;
    for name in [
        "arith_small.json",
        "arith_small.eval",
        "arith_small_deflate.eval",
    ] {
        let original = std::fs::read(dir.join(name)).expect("fixture");
        for round in 0..600 {
            let bytes = mutate(&mut rng, &original);
            let outcome = std::panic::catch_unwind(|| read(Cursor::new(bytes), limits));
            match outcome {
                Ok(Ok(_)) => read_ok += 1,
                Ok(Err(_)) => {}
                Err(_) => panic!("{name}, round {round}: the reader panicked"),
            }
        }
    }
    // Some mutations (inside a string, say) leave a readable log: the test reached past
    // the first byte.
    assert!(read_ok > 0);
}
