//! A recorded NDJSON file of events as one input partition, in file order: the source of
//! `replay`. The offset of a record is its line number minus one.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::{IoError, SourceRecord};

pub struct NdjsonSource {
    reader: BufReader<File>,
    topic: Arc<str>,
    what: String,
    line: i64,
    finished: bool,
}

impl NdjsonSource {
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let what = format!("events file {}", path.display());
        let file = File::open(path).map_err(|source| IoError::Io { what: what.clone(), source })?;
        Ok(NdjsonSource {
            reader: BufReader::new(file),
            topic: Arc::from(path.display().to_string()),
            what,
            line: 0,
            finished: false,
        })
    }
}

/// Reads one line into `buf` (without its newline), keeping at most `limit` bytes of it and
/// skipping the rest: memory stays bounded whatever the file holds. Returns the line's whole
/// length with its newline, 0 at the end of the file.
fn read_line_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(total);
        }
        let (taken, done) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        let kept = taken.min(limit.saturating_sub(buf.len()));
        buf.extend_from_slice(&available[..kept]);
        reader.consume(taken);
        total += taken;
        if done {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            return Ok(total);
        }
    }
}

impl super::Source for NdjsonSource {
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<(), IoError> {
        let mut buf = Vec::new();
        for _ in 0..max {
            buf.clear();
            // One byte over the limit is enough for the engine to refuse the event as too large.
            let limit = crate::event::MAX_EVENT_BYTES + 1;
            let read = read_line_bounded(&mut self.reader, &mut buf, limit)
                .map_err(|source| IoError::Io { what: self.what.clone(), source })?;
            if read == 0 {
                self.finished = true;
                break;
            }
            let offset = self.line;
            self.line += 1;
            if buf.len() >= limit {
                tracing::warn!(
                    "{} line {}: {read} bytes, over the {}-byte limit of an event: only the first {limit} are kept, and it is dead-lettered",
                    self.what,
                    offset + 1,
                    crate::event::MAX_EVENT_BYTES
                );
            }
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines carry no event
            }
            out.push(SourceRecord { topic: self.topic.clone(), partition: 0, offset, key: None, payload: buf.clone() });
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<(Arc<str>, i32)> {
        vec![(self.topic.clone(), 0)]
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_up_to_the_limit_and_cut_beyond_it() {
        let text = [&b"short\r\n"[..], &[b'x'; 40], b"\n", b"\n", b"last"].concat();
        let mut reader = BufReader::with_capacity(7, &text[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        loop {
            buf.clear();
            let read = read_line_bounded(&mut reader, &mut buf, 16).unwrap();
            if read == 0 {
                break;
            }
            lines.push((read, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            lines,
            [(7, "short\r".to_string()), (41, "x".repeat(16)), (1, String::new()), (4, "last".to_string())]
        );
    }
}
