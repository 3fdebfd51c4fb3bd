//! Files of JSON lines that `pfn run` writes beside its output: dead letters and published
//! messages.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

/// Appends JSON lines to a file, created when the first line arrives.
#[derive(Debug)]
pub struct JsonLinesFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl JsonLinesFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path, writer: None }
    }

    /// Where the lines go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `{stem}.{suffix}.jsonl` beside the output file, or `pfn-{suffix}.jsonl` in the working
    /// directory when the output is stdout.
    pub fn beside(output: Option<&Path>, suffix: &str) -> PathBuf {
        match output {
            Some(output) => {
                let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                output.with_file_name(format!("{stem}.{suffix}.jsonl"))
            }
            None => PathBuf::from(format!("pfn-{suffix}.jsonl")),
        }
    }

    /// Appends one line.
    pub fn write(&mut self, line: &impl Serialize) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(BufWriter::new(File::create(&self.path)?)),
        };
        serde_json::to_writer(&mut *writer, line)?;
        writer.write_all(b"\n")
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}
