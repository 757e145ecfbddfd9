//! Peak memory of reading an Inspect log as the import reads it to write its scores
//! (`jointeval_inspect::read_each`: each score handed on and let go), against reading it
//! whole (`read`, every score kept), for logs of SCORES scores: a JSON log and an `.eval`
//! archive each, generated to files from the fixture's header and first sample, each read
//! in a process of its own that reports its peak resident set.
//!
//!     cargo bench --bench inspect_memory              # 20,000, 100,000 and 1,000,000
//!     cargo bench --bench inspect_memory -- 50000     # one count

#[path = "common/logs.rs"]
mod logs;
#[path = "common/peak.rs"]
mod peak;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use jointeval_inspect::Limits;

/// In a process of its own: reads one log, and prints what it read and its peak memory.
fn read_one(how: &str, path: &Path) {
    let started = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    let limits = Limits {
        max_expanded: u64::MAX,
        ..Limits::default()
    };
    let scores = match how {
        "each" => {
            let mut scores = 0usize;
            jointeval_inspect::read_each(file, None, limits, &mut |item| {
                scores += usize::from(matches!(item, jointeval_inspect::Item::Score(_)));
                Ok(())
            })
            .expect("read");
            scores
        }
        _ => jointeval_inspect::read(file, limits)
            .expect("read")
            .scores
            .len(),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{scores} scores in {secs:.2} s, peak resident {:.1} MiB",
        peak::peak_kib() as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, how, path] = args.as_slice()
        && mode == "read"
    {
        read_one(how, Path::new(path));
        return;
    }
    let counts: Vec<usize> = match args.iter().find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![20_000, 100_000, 1_000_000],
    };
    let dir = std::env::temp_dir().join(format!("jointeval-inspect-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let me = std::env::current_exe().expect("this program");
    for n in counts {
        let logs::Generated {
            json: json_log,
            eval: eval_log,
            ..
        } = logs::generate(&dir, n);
        for path in [&json_log, &eval_log] {
            let size = std::fs::metadata(path).expect("size").len() as f64 / (1024.0 * 1024.0);
            for how in ["each", "whole"] {
                let output = Command::new(&me)
                    .args(["read", how, path.to_str().expect("utf-8")])
                    .output()
                    .expect("a reader");
                let mut said = String::new();
                output
                    .stdout
                    .as_slice()
                    .read_to_string(&mut said)
                    .expect("utf-8");
                println!(
                    "{} ({size:.0} MiB), read {}: {}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                    if how == "each" {
                        "as the import writes (read_each)"
                    } else {
                        "whole (read)"
                    },
                    said.trim()
                );
            }
        }
        std::fs::remove_file(&json_log).ok();
        std::fs::remove_file(&eval_log).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}
