//! The dead-letter file: one JSON line per message that could not be processed.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::lines::PayloadJson;

/// One dead letter.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// The message id (for `pfn run`, the input line number).
    pub message_id: &'a str,
    /// `error`, `panic`, `bad_input` or `malformed`.
    pub reason: &'a str,
    /// What went wrong, e.g. the panic message with its location.
    pub error: &'a str,
    /// The input message.
    #[serde(flatten)]
    pub payload: PayloadJson<'a>,
}

/// Appends dead letters to a file, created when the first one arrives.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl DeadLetterFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path, writer: None }
    }

    /// Where dead letters go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The default place: beside the output file, or in the working directory.
    pub fn default_path(output: Option<&Path>) -> PathBuf {
        match output {
            Some(output) => {
                let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                output.with_file_name(format!("{stem}.dead-letter.jsonl"))
            }
            None => PathBuf::from("pfn-dead-letter.jsonl"),
        }
    }

    /// Appends one dead letter.
    pub fn write(&mut self, letter: &DeadLetter<'_>) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(BufWriter::new(File::create(&self.path)?)),
        };
        serde_json::to_writer(&mut *writer, letter)?;
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
