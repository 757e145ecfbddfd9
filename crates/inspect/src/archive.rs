//! The zip archive an `.eval` log is, read without holding its central directory: the
//! directory is walked one record at a time (twice: once to check it and find the entries
//! read by name, once to read the samples), so memory holds one record, and of the others
//! only their names' hashes, 8 bytes an entry, to refuse a name that comes twice. Only
//! what Inspect writes is read: one disk, stored, deflate or zstd entries, zip64 records,
//! and data descriptors (whose sizes the central directory repeats).

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use crate::LogError;

const END: &[u8; 4] = b"PK\x05\x06";
const END_LEN: usize = 22;
const ZIP64_LOCATOR: &[u8; 4] = b"PK\x06\x07";
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_END: &[u8; 4] = b"PK\x06\x06";
const ZIP64_END_LEN: usize = 56;
const RECORD: &[u8; 4] = b"PK\x01\x02";
const RECORD_LEN: usize = 46;
const LOCAL: &[u8; 4] = b"PK\x03\x04";
const LOCAL_LEN: usize = 30;
/// A 32-bit size or offset of this value is in the record's zip64 extra field instead.
const IN_ZIP64: u64 = 0xFFFF_FFFF;
/// Central directory bytes read at a time.
const CHUNK: usize = 64 << 10;

/// Where the central directory is.
pub(crate) struct Directory {
    start: u64,
    end: u64,
    entries: u64,
}

/// The entries read by name.
pub(crate) struct Known {
    pub header: Option<Entry>,
    pub reductions: Option<Entry>,
    /// The set the names' hashes were in, emptied: sized for the archive's entries, it
    /// holds the samples' ids without growing.
    pub spare: HashSet<u64>,
}

/// One central directory record: what reading its entry takes.
pub(crate) struct Entry {
    name: Vec<u8>,
    method: u16,
    crc32: u32,
    pub compressed: u64,
    pub size: u64,
    offset: u64,
}

/// A walk of the central directory, holding one chunk of it.
pub(crate) struct Records<'d> {
    directory: &'d Directory,
    chunk: Vec<u8>,
    /// The archive offset of `chunk[0]`.
    at: u64,
    next: usize,
    left: u64,
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(format!(".eval archive: {what}"))
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from(le32(bytes, at)) | u64::from(le32(bytes, at + 4)) << 32
}

fn read_at(input: &mut (impl Read + Seek), at: u64, buf: &mut [u8]) -> Result<(), LogError> {
    input
        .seek(SeekFrom::Start(at))
        .and_then(|_| input.read_exact(buf))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                corrupt(format!("it ends before byte {}", at + buf.len() as u64))
            }
            _ => corrupt(format!("at byte {at}: {e}")),
        })
}

impl Directory {
    /// Finds the central directory from the end-of-central-directory record (and its zip64
    /// form, when the archive has one).
    pub fn find(input: &mut (impl Read + Seek)) -> Result<Directory, LogError> {
        let len = input.seek(SeekFrom::End(0)).map_err(corrupt)?;
        let (end_at, end) = end_record(input, len)?;
        let (start, size, entries, bound) = match zip64_end(input, end_at)? {
            Some((at, record)) => (le64(&record, 48), le64(&record, 40), le64(&record, 32), at),
            None if le16(&end, 4) != 0 || le16(&end, 6) != 0 => {
                return Err(corrupt("it spans several disks"));
            }
            None => (
                u64::from(le32(&end, 16)),
                u64::from(le32(&end, 12)),
                u64::from(le16(&end, 10)),
                end_at,
            ),
        };
        match start.checked_add(size) {
            Some(end) if end <= bound => Ok(Directory {
                start,
                end,
                entries,
            }),
            _ => Err(corrupt("its central directory lies past its end")),
        }
    }

    pub fn records(&self) -> Records<'_> {
        Records {
            directory: self,
            chunk: Vec::new(),
            at: self.start,
            next: 0,
            left: self.entries,
        }
    }

    /// Walks the whole directory, checking every record before any sample is read: a name
    /// that comes twice is refused (readers differ on which of the two they read), and so
    /// are entries that need more bytes together than lie before the directory, which can
    /// only be entries sharing their bytes (a bomb's way to expand one span many times).
    pub fn known(&self, input: &mut (impl Read + Seek)) -> Result<Known, LogError> {
        // 8 bytes a name; the hashes are keyed afresh so that a collision, a false refusal,
        // cannot be made on purpose.
        let keys = std::collections::hash_map::RandomState::new();
        let mut names = HashSet::new();
        let mut header = None;
        let mut reductions = None;
        let mut used = 0u64;
        let mut records = self.records();
        while let Some(entry) = records.next(input)? {
            if !names.insert(keys.hash_one(&entry.name)) {
                return Err(corrupt(format!("it names {} twice", entry.name())));
            }
            used = used
                .saturating_add((LOCAL_LEN + entry.name.len()) as u64)
                .saturating_add(entry.compressed);
            if used > self.start {
                return Err(corrupt("its entries overlap"));
            }
            match entry.name.as_slice() {
                b"header.json" => header = Some(entry),
                b"reductions.json" => reductions = Some(entry),
                _ => {}
            }
        }
        names.clear();
        Ok(Known {
            header,
            reductions,
            spare: names,
        })
    }

    /// The entry's bytes as they expand, from the data after its local header.
    pub fn open<'a, R: Read + Seek>(
        &self,
        input: &'a mut R,
        entry: &Entry,
    ) -> Result<Box<dyn Read + 'a>, LogError> {
        let name = entry.name();
        let failed = |e: std::io::Error| LogError::Corrupt(format!("{name}: {e}"));
        input.seek(SeekFrom::Start(entry.offset)).map_err(failed)?;
        let mut data = BufReader::new(input.take(self.start - entry.offset));
        let mut local = [0u8; LOCAL_LEN];
        data.read_exact(&mut local).map_err(failed)?;
        let (name_len, extra_len) = (le16(&local, 26), le16(&local, 28));
        if &local[..4] != LOCAL || usize::from(name_len) != entry.name.len() {
            return Err(LogError::Corrupt(format!(
                "{name}: its local header is damaged"
            )));
        }
        let mut local_name = vec![0u8; entry.name.len()];
        data.read_exact(&mut local_name).map_err(failed)?;
        if local_name != entry.name {
            return Err(LogError::Corrupt(format!(
                "{name}: its local header names {}",
                String::from_utf8_lossy(&local_name)
            )));
        }
        let skipped = std::io::copy(
            &mut (&mut data).take(extra_len.into()),
            &mut std::io::sink(),
        )
        .map_err(failed)?;
        let data_len = (LOCAL_LEN + entry.name.len()) as u64 + skipped + entry.compressed;
        if skipped != u64::from(extra_len) || entry.offset + data_len > self.start {
            return Err(LogError::Corrupt(format!(
                "{name}: its data runs past the entries"
            )));
        }
        decompress(data.take(entry.compressed), entry.method, &name)
    }
}

/// The end-of-central-directory record, and where it is: the last one whose comment fits
/// in the archive (bytes may follow it, as Python's `zipfile` allows).
fn end_record(input: &mut (impl Read + Seek), len: u64) -> Result<(u64, Vec<u8>), LogError> {
    let tail_len = len.min((END_LEN + usize::from(u16::MAX)) as u64);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(input, len - tail_len, &mut tail)?;
    let found = (0..tail.len().saturating_sub(END_LEN - 1))
        .rev()
        .find(|&at| {
            &tail[at..at + 4] == END
                && at + END_LEN + usize::from(le16(&tail, at + 20)) <= tail.len()
        });
    let at = found.ok_or_else(|| corrupt("it has no end of central directory record"))?;
    tail.drain(..at);
    tail.truncate(END_LEN);
    Ok((len - tail_len + at as u64, tail))
}

/// The zip64 end-of-central-directory record and where it is, when the locator before
/// the end record points to one.
fn zip64_end(
    input: &mut (impl Read + Seek),
    end_at: u64,
) -> Result<Option<(u64, [u8; ZIP64_END_LEN])>, LogError> {
    let Some(locator_at) = end_at.checked_sub(ZIP64_LOCATOR_LEN) else {
        return Ok(None);
    };
    let mut locator = [0u8; ZIP64_LOCATOR_LEN as usize];
    read_at(input, locator_at, &mut locator)?;
    if &locator[..4] != ZIP64_LOCATOR {
        return Ok(None);
    }
    let at = le64(&locator, 8);
    if at
        .checked_add(ZIP64_END_LEN as u64)
        .is_none_or(|end| end > locator_at)
    {
        return Err(corrupt("its zip64 end record lies past its end"));
    }
    let mut record = [0u8; ZIP64_END_LEN];
    read_at(input, at, &mut record)?;
    if &record[..4] != ZIP64_END {
        return Err(corrupt("its zip64 end record is damaged"));
    }
    if le32(&record, 16) != 0 || le32(&record, 20) != 0 {
        return Err(corrupt("it spans several disks"));
    }
    Ok(Some((at, record)))
}

fn decompress<'a>(
    compressed: impl BufRead + 'a,
    method: u16,
    name: &str,
) -> Result<Box<dyn Read + 'a>, LogError> {
    Ok(match method {
        0 => Box::new(compressed),
        8 => Box::new(flate2::bufread::DeflateDecoder::new(compressed)),
        93 => Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|e| LogError::Corrupt(format!("{name}: {e}")))?,
        ),
        other => {
            return Err(LogError::Corrupt(format!(
                "{name}: compression method {other} is not read (only stored, deflate and zstd)"
            )));
        }
    })
}

impl Records<'_> {
    pub fn next(&mut self, input: &mut (impl Read + Seek)) -> Result<Option<Entry>, LogError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let mut fixed = [0u8; RECORD_LEN];
        fixed.copy_from_slice(self.bytes(input, RECORD_LEN)?);
        if &fixed[..4] != RECORD {
            return Err(corrupt("its central directory is damaged"));
        }
        let (name_len, extra_len) = (usize::from(le16(&fixed, 28)), usize::from(le16(&fixed, 30)));
        let len = RECORD_LEN + name_len + extra_len + usize::from(le16(&fixed, 32));
        let record = self.bytes(input, len)?;
        let name = record[RECORD_LEN..RECORD_LEN + name_len].to_vec();
        let extra = &record[RECORD_LEN + name_len..RECORD_LEN + name_len + extra_len];
        let mut entry = Entry {
            name,
            method: le16(&fixed, 10),
            crc32: le32(&fixed, 16),
            compressed: le32(&fixed, 20).into(),
            size: le32(&fixed, 24).into(),
            offset: le32(&fixed, 42).into(),
        };
        entry.read_zip64(extra)?;
        self.next += len;
        if le16(&fixed, 8) & 1 != 0 {
            return Err(LogError::Corrupt(format!(
                "{}: it is encrypted, which this service does not read",
                entry.name()
            )));
        }
        let data_end = entry
            .offset
            .checked_add((LOCAL_LEN + name_len) as u64)
            .and_then(|end| end.checked_add(entry.compressed));
        if data_end.is_none_or(|end| end > self.directory.start) {
            return Err(LogError::Corrupt(format!(
                "{}: lies past the archive's entries",
                entry.name()
            )));
        }
        Ok(Some(entry))
    }

    /// The next `len` bytes of the directory, from the chunk held or a new one.
    fn bytes(&mut self, input: &mut (impl Read + Seek), len: usize) -> Result<&[u8], LogError> {
        if self.chunk.len() - self.next < len {
            let from = self.at + self.next as u64;
            let available = self.directory.end - from;
            if available < len as u64 {
                return Err(corrupt("its central directory is cut short"));
            }
            self.chunk
                .resize(available.min(len.max(CHUNK) as u64) as usize, 0);
            read_at(input, from, &mut self.chunk)?;
            self.at = from;
            self.next = 0;
        }
        Ok(&self.chunk[self.next..self.next + len])
    }
}

impl Entry {
    /// The name, for matching and for messages (an invalid UTF-8 byte shows as `�`).
    pub fn name(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    pub fn is_sample(&self) -> bool {
        self.name.starts_with(b"samples/") && self.name.ends_with(b".json")
    }

    /// Refuses bytes that are not what the central directory says the entry expands to:
    /// `len` of them, with this CRC-32.
    pub fn check(&self, len: u64, crc32: u32) -> Result<(), LogError> {
        if len != self.size {
            return Err(LogError::Corrupt(format!(
                "{}: expands to {len} bytes, not the {} its record says",
                self.name(),
                self.size
            )));
        }
        if crc32 != self.crc32 {
            return Err(LogError::Corrupt(format!(
                "{}: its CRC-32 does not match",
                self.name()
            )));
        }
        Ok(())
    }

    /// Sizes and offset too large for their 32-bit fields, from the zip64 extra field
    /// (tag 1), which holds those that are `IN_ZIP64`, in this order.
    fn read_zip64(&mut self, mut extra: &[u8]) -> Result<(), LogError> {
        while extra.len() >= 4 {
            let (tag, len) = (le16(extra, 0), usize::from(le16(extra, 2)));
            let Some(field) = extra.get(4..4 + len) else {
                return Err(LogError::Corrupt(format!(
                    "{}: its extra field is cut short",
                    self.name()
                )));
            };
            if tag == 1 {
                let mut values = field.chunks_exact(8).map(|v| le64(v, 0));
                for wide in [&mut self.size, &mut self.compressed, &mut self.offset] {
                    if *wide == IN_ZIP64 {
                        *wide = values.next().ok_or_else(|| {
                            LogError::Corrupt(format!(
                                "{}: its zip64 extra field is cut short",
                                String::from_utf8_lossy(&self.name)
                            ))
                        })?;
                    }
                }
            }
            extra = &extra[4 + len..];
        }
        Ok(())
    }
}
