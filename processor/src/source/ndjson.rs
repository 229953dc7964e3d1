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

impl super::Source for NdjsonSource {
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<(), IoError> {
        let mut buf = Vec::new();
        for _ in 0..max {
            buf.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| IoError::Io { what: self.what.clone(), source })?;
            if read == 0 {
                self.finished = true;
                break;
            }
            let offset = self.line;
            self.line += 1;
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
