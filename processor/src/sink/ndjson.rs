//! Writes `DIR/{aggregates,inventory,alerts,dead-letter,late}.ndjson`: the output of
//! `replay`, one JSON record per line.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::output::Output;
use crate::source::IoError;

use super::Position;

/// The output files, in the order of [`file_index`].
pub const FILES: [&str; 5] =
    ["aggregates.ndjson", "inventory.ndjson", "alerts.ndjson", "dead-letter.ndjson", "late.ndjson"];

/// The file of an output; `None` for a task's partial, which the repartition stage merges
/// before anything is written.
fn file_index(output: &Output) -> Option<usize> {
    match output {
        Output::Aggregate(_) => Some(0),
        Output::Inventory(_) => Some(1),
        Output::Alert(_) => Some(2),
        Output::DeadLetter(_) => Some(3),
        Output::Late(_) => Some(4),
        Output::Partial(_) => None,
    }
}

pub struct NdjsonSink {
    files: Vec<(PathBuf, BufWriter<File>)>,
    /// The line being written, reused.
    line: Vec<u8>,
}

impl NdjsonSink {
    /// Creates (or truncates) the output files in `dir`, creating `dir` if needed.
    pub fn create(dir: &Path) -> Result<Self, IoError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| IoError::Io { what: format!("output directory {}", dir.display()), source })?;
        let files = FILES
            .iter()
            .map(|name| {
                let path = dir.join(name);
                File::create(&path)
                    .map(|f| (path.clone(), BufWriter::new(f)))
                    .map_err(|source| IoError::Io { what: format!("output file {}", path.display()), source })
            })
            .collect::<Result<_, _>>()?;
        Ok(NdjsonSink { files, line: Vec::with_capacity(1024) })
    }
}

impl super::Sink for NdjsonSink {
    fn write(&mut self, outputs: &[Output]) -> Result<(), IoError> {
        for output in outputs {
            let Some(index) = file_index(output) else {
                return Err(IoError::Other(format!(
                    "partial {} reached the output files unmerged (a bug of the repartition stage)",
                    output.key()
                )));
            };
            let (path, file) = &mut self.files[index];
            self.line.clear();
            output.write_json(&mut self.line);
            self.line.push(b'\n');
            file.write_all(&self.line)
                .map_err(|source| IoError::Io { what: format!("output file {}", path.display()), source })?;
        }
        Ok(())
    }

    fn commit(&mut self, _positions: &[Position]) -> Result<(), IoError> {
        for (path, file) in &mut self.files {
            file.flush().map_err(|source| IoError::Io { what: format!("output file {}", path.display()), source })?;
        }
        Ok(())
    }
}
