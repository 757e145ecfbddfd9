//! The archive's other shapes (zip64 records, data descriptors) read to the same log as
//! the one Inspect wrote, and a damaged directory is refused with a reason. The archives
//! are the fixture's entries, their compressed bytes as Inspect wrote them, packed again
//! by the small writer here (or by the zip crate's streaming writer).

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use jointeval_inspect::{Limits, Log, LogError, read};

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/inspect")
        .join(name);
    std::fs::read(path).expect("fixture")
}

/// One entry as it is stored: compressed bytes, and what they expand to.
#[derive(Clone)]
struct Raw {
    name: String,
    method: u16,
    crc32: u32,
    size: u64,
    data: Vec<u8>,
}

fn entries_of(name: &str) -> Vec<Raw> {
    let mut archive = zip::ZipArchive::new(Cursor::new(fixture_bytes(name))).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index_raw(i).expect("entry");
            let method = match file.compression() {
                zip::CompressionMethod::Stored => 0,
                zip::CompressionMethod::Deflated => 8,
                zip::CompressionMethod::Zstd => 93,
                other => panic!("the fixtures hold no {other:?} entry"),
            };
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read");
            Raw {
                name: file.name().to_owned(),
                method,
                crc32: file.crc32(),
                size: file.size(),
                data,
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Style {
    /// Sizes and CRC left out of the local headers, in a data descriptor after the data.
    descriptor: bool,
    /// Every size and offset in a zip64 extra field, and the zip64 end records.
    zip64: bool,
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn narrow(v: u64, zip64: bool) -> u32 {
    if zip64 {
        u32::MAX
    } else {
        u32::try_from(v).expect("small")
    }
}

fn local_header(out: &mut Vec<u8>, e: &Raw, style: Style) {
    out.extend_from_slice(b"PK\x03\x04");
    put16(out, 45);
    put16(out, if style.descriptor { 1 << 3 } else { 0 });
    put16(out, e.method);
    put16(out, 0);
    put16(out, 0x21);
    let (crc32, compressed, size) = if style.descriptor {
        (0, 0, 0)
    } else {
        (e.crc32, e.data.len() as u32, e.size as u32)
    };
    put32(out, crc32);
    put32(out, compressed);
    put32(out, size);
    put16(out, e.name.len() as u16);
    put16(out, 0);
    out.extend_from_slice(e.name.as_bytes());
    out.extend_from_slice(&e.data);
    if style.descriptor {
        out.extend_from_slice(b"PK\x07\x08");
        put32(out, e.crc32);
        put32(out, e.data.len() as u32);
        put32(out, e.size as u32);
    }
}

fn central_record(out: &mut Vec<u8>, e: &Raw, offset: u64, style: Style) {
    out.extend_from_slice(b"PK\x01\x02");
    put16(out, 0x032D);
    put16(out, 45);
    put16(out, if style.descriptor { 1 << 3 } else { 0 });
    put16(out, e.method);
    put16(out, 0);
    put16(out, 0x21);
    put32(out, e.crc32);
    put32(out, narrow(e.data.len() as u64, style.zip64));
    put32(out, narrow(e.size, style.zip64));
    put16(out, e.name.len() as u16);
    put16(out, if style.zip64 { 28 } else { 0 });
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put32(out, 0);
    put32(out, narrow(offset, style.zip64));
    out.extend_from_slice(e.name.as_bytes());
    if style.zip64 {
        put16(out, 1);
        put16(out, 24);
        put64(out, e.size);
        put64(out, e.data.len() as u64);
        put64(out, offset);
    }
}

fn pack(entries: &[Raw], style: Style) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u64;
        local_header(&mut out, e, style);
        central_record(&mut central, e, offset, style);
    }
    end(out, &central, entries.len() as u64, style)
}

/// The entries `out` holds, then their central directory of `count` records.
fn end(mut out: Vec<u8>, central: &[u8], count: u64, style: Style) -> Vec<u8> {
    let (start, size) = (out.len() as u64, central.len() as u64);
    out.extend_from_slice(central);
    if style.zip64 {
        let record_at = out.len() as u64;
        out.extend_from_slice(b"PK\x06\x06");
        put64(&mut out, 44);
        put16(&mut out, 45);
        put16(&mut out, 45);
        put32(&mut out, 0);
        put32(&mut out, 0);
        put64(&mut out, count);
        put64(&mut out, count);
        put64(&mut out, size);
        put64(&mut out, start);
        out.extend_from_slice(b"PK\x06\x07");
        put32(&mut out, 0);
        put64(&mut out, record_at);
        put32(&mut out, 1);
    }
    out.extend_from_slice(b"PK\x05\x06");
    put16(&mut out, 0);
    put16(&mut out, 0);
    let count = if style.zip64 { u16::MAX } else { count as u16 };
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, narrow(size, style.zip64));
    put32(&mut out, narrow(start, style.zip64));
    put16(&mut out, 0);
    out
}

const PLAIN: Style = Style {
    descriptor: false,
    zip64: false,
};

fn read_bytes(bytes: Vec<u8>) -> Result<Log, LogError> {
    read(Cursor::new(bytes), Limits::default())
}

fn refusal(bytes: Vec<u8>) -> String {
    match read_bytes(bytes) {
        Err(LogError::Corrupt(why)) => why,
        other => panic!("not refused as corrupt: {other:?}"),
    }
}

#[test]
fn zip64_records_and_data_descriptors_read_to_the_same_log() {
    for fixture in [
        "arith_small.eval",
        "arith_small_deflate.eval",
        "arith_epochs.eval",
    ] {
        let want = read_bytes(fixture_bytes(fixture)).expect(fixture);
        let entries = entries_of(fixture);
        for (descriptor, zip64) in [(false, false), (true, false), (false, true), (true, true)] {
            let bytes = pack(&entries, Style { descriptor, zip64 });
            let got = read_bytes(bytes).expect(fixture);
            assert_eq!(
                got, want,
                "{fixture}, descriptor {descriptor}, zip64 {zip64}"
            );
        }
    }
}

/// The zip crate's writer, on a stream it cannot seek back in, writes data descriptors.
#[test]
fn an_archive_written_as_a_stream_reads_to_the_same_log() {
    let want = read_bytes(fixture_bytes("arith_small.eval")).expect("fixture");
    let mut source =
        zip::ZipArchive::new(Cursor::new(fixture_bytes("arith_small.eval"))).expect("a zip");
    let mut bytes = Vec::new();
    {
        let mut writer = zip::ZipWriter::new_stream(&mut bytes);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Zstd);
        for i in 0..source.len() {
            let mut file = source.by_index(i).expect("entry");
            let mut text = Vec::new();
            file.read_to_end(&mut text).expect("read");
            writer.start_file(file.name(), options).expect("start");
            writer.write_all(&text).expect("write");
        }
        writer.finish().expect("finish");
    }
    let descriptors = bytes.windows(4).filter(|w| w == b"PK\x07\x08").count();
    assert_eq!(
        descriptors,
        source.len(),
        "every entry has a data descriptor"
    );
    assert_eq!(read_bytes(bytes).expect("streamed"), want);
}

#[test]
fn a_name_twice_in_the_central_directory_is_refused() {
    let entries = entries_of("arith_small.eval");
    for twice in [
        "samples/q0003_epoch_1.json",
        "header.json",
        "reductions.json",
    ] {
        let mut doubled = entries.clone();
        let at = doubled.iter().position(|e| e.name == twice).expect(twice);
        doubled.insert(at, doubled[at].clone());
        for zip64 in [false, true] {
            let why = refusal(pack(&doubled, Style { zip64, ..PLAIN }));
            assert!(why.contains(&format!("names {twice} twice")), "{why}");
        }
    }
}

#[test]
fn a_damaged_entry_is_refused_naming_it() {
    let entries = entries_of("arith_small.eval");
    let target = "samples/q0003_epoch_1.json";
    let at = entries.iter().position(|e| e.name == target).expect(target);

    // The local header names another entry than the central directory does.
    let mut bytes = pack(&entries, PLAIN);
    let local = bytes
        .windows(target.len())
        .position(|w| w == target.as_bytes())
        .expect("local name");
    bytes[local + 11] = b'9';
    let why = refusal(bytes);
    assert!(
        why.contains(&format!("{target}: its local header names samples/q0093")),
        "{why}"
    );

    let mut bzip2 = entries.clone();
    bzip2[at].method = 12;
    let why = refusal(pack(&bzip2, PLAIN));
    assert!(
        why.contains(&format!("{target}: compression method 12")),
        "{why}"
    );

    // Each entry read, whether held (the header, a sample) or streamed (the reductions).
    for target in ["header.json", target, "reductions.json"] {
        let at = entries.iter().position(|e| e.name == target).expect(target);
        let mut crc = entries.clone();
        crc[at].crc32 ^= 1;
        let why = refusal(pack(&crc, PLAIN));
        assert_eq!(why, format!("{target}: its CRC-32 does not match"));

        let mut size = entries.clone();
        size[at].size += 1;
        let why = refusal(pack(&size, PLAIN));
        assert!(why.starts_with(&format!("{target}: expands to ")), "{why}");
    }
}

/// The reductions are streamed, not held, so no bound on one entry's size holds them; the
/// ratio to their compressed size does, whatever their record claims.
#[test]
fn reductions_that_expand_far_beyond_their_size_are_a_bomb() {
    let mut entries = entries_of("arith_small.eval");
    let at = entries
        .iter()
        .position(|e| e.name == "reductions.json")
        .expect("reductions");
    let spaces = vec![b' '; 64 << 20];
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(b"[").expect("deflate");
    deflated.write_all(&spaces).expect("deflate");
    deflated.write_all(b"]").expect("deflate");
    let data = deflated.finish().expect("deflate");
    assert!(data.len() < 1 << 20);
    for claimed in [64 << 20, 100] {
        entries[at] = Raw {
            name: "reductions.json".into(),
            method: 8,
            crc32: 0,
            size: claimed,
            data: data.clone(),
        };
        assert_eq!(
            read_bytes(pack(&entries, PLAIN)),
            Err(LogError::Bomb {
                entry: "reductions.json".into()
            }),
            "a record that claims {claimed} bytes"
        );
    }
}

#[test]
fn a_damaged_directory_is_refused() {
    let entries = entries_of("arith_small.eval");
    let plain = pack(&entries, PLAIN);
    let start = u32::from_le_bytes(
        plain[plain.len() - 6..plain.len() - 2]
            .try_into()
            .expect("4"),
    );

    // The first record's entry placed past the entries (the directory starts there).
    let mut past = plain.clone();
    let offset = start as usize + 42;
    past[offset..offset + 4].copy_from_slice(&start.to_le_bytes());
    let why = refusal(past);
    assert!(why.contains("lies past the archive's entries"), "{why}");

    // More records than the directory holds.
    let mut more = plain.clone();
    let count = more.len() - 12;
    more[count] += 1;
    let why = refusal(more);
    assert!(why.contains("central directory"), "{why}");

    // A zip64 locator pointing nowhere.
    let mut zip64 = pack(
        &entries,
        Style {
            zip64: true,
            ..PLAIN
        },
    );
    let locator = zip64.len() - 22 - 20;
    zip64[locator + 8..locator + 16].copy_from_slice(&3u64.to_le_bytes());
    let why = refusal(zip64);
    assert!(why.contains("zip64 end record"), "{why}");

    // Cut anywhere, it is refused, never read as a shorter log; so is one whose entries
    // were cut short under a whole directory.
    for len in (0..plain.len()).step_by(97) {
        assert!(read_bytes(plain[..len].to_vec()).is_err(), "cut at {len}");
    }
    let mut short = plain[..start as usize - 100].to_vec();
    short.extend_from_slice(&plain[start as usize..]);
    assert!(read_bytes(short).is_err());
}

/// Records that share one entry's bytes (a bomb's way to expand one span many times) are
/// refused before anything is expanded.
#[test]
fn entries_that_share_their_bytes_are_refused() {
    let entries = entries_of("arith_small.eval");
    let header = entries
        .iter()
        .find(|e| e.name == "header.json")
        .expect("header");
    let mut out = Vec::new();
    local_header(&mut out, header, PLAIN);
    let mut central = Vec::new();
    central_record(&mut central, header, 0, PLAIN);
    for i in 0..3 {
        let copy = Raw {
            // As long as the header's name: each record alone fits before the directory.
            name: format!("entry{i}.json"),
            ..header.clone()
        };
        central_record(&mut central, &copy, 0, PLAIN);
    }
    let why = refusal(end(out, &central, 4, PLAIN));
    assert_eq!(why, ".eval archive: its entries overlap");
}

/// Bytes after the end of the directory are not the archive's, as Python's `zipfile`
/// reads it.
#[test]
fn bytes_after_the_archive_are_passed_over() {
    let entries = entries_of("arith_small.eval");
    let plain = pack(&entries, PLAIN);
    let mut followed = plain.clone();
    followed.extend_from_slice(b"appended by a careless copy");
    assert_eq!(
        read_bytes(followed).expect("read"),
        read_bytes(plain).expect("read")
    );
}

/// `reductions.json` is read as it expands, a sample at a time, so it may be larger than
/// the bound on an entry held whole; what is held of it (samples waiting for a scorer
/// named after them) is held to that bound.
#[test]
fn reductions_larger_than_an_entry_read_unless_held_whole() {
    let mut entries = entries_of("arith_small.eval");
    let at = entries
        .iter()
        .position(|e| e.name == "reductions.json")
        .expect("reductions");
    let largest = entries
        .iter()
        .filter(|e| e.name != "reductions.json")
        .map(|e| e.size)
        .max()
        .expect("entries");
    let limits = Limits {
        max_entry: largest,
        ..Limits::default()
    };
    // Larger than the bound by more than what the reading buffers ahead of the parser.
    let sample = r#"{"value": 1.0, "answer": "4", "sample_id": "q0000"}"#;
    let count = (largest as usize + (64 << 10)) / sample.len();
    let samples = vec![sample; count].join(",");
    let reductions = |reduction: String| {
        let data = format!("[{reduction}]").into_bytes();
        assert!(data.len() as u64 > largest + (64 << 10));
        Raw {
            name: "reductions.json".into(),
            method: 0,
            crc32: crc32fast::hash(&data),
            size: data.len() as u64,
            data,
        }
    };
    entries[at] = reductions(format!(r#"{{"scorer": "match", "samples": [{samples}]}}"#));
    let read = read(Cursor::new(pack(&entries, PLAIN)), limits).expect("streamed");
    assert_eq!(read.reductions.len(), count);

    entries[at] = reductions(format!(r#"{{"samples": [{samples}], "scorer": "match"}}"#));
    match jointeval_inspect::read(Cursor::new(pack(&entries, PLAIN)), limits) {
        Err(LogError::Corrupt(why)) => assert_eq!(
            why,
            format!(
                "reductions.json: one of its elements is larger than {largest} bytes, more \
                 than this service holds at once"
            )
        ),
        other => panic!("held whole: {other:?}"),
    }
}
