//! Sources and sinks: the transport traits, the embedded and Pulsar transports, lines from a file or
//! stdin, lines to a file or stdout, and files of JSON lines (dead letters, published messages).

pub mod dead_letter;
pub mod embedded;
pub mod json_lines;
pub mod lines;
pub mod producer_config;
pub mod pulsar;
pub mod transport;

use std::{
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Write},
    path::Path,
};

/// Opens `path` for buffered reading, or stdin when there is none.
pub fn open_input(path: Option<&Path>) -> io::Result<Box<dyn BufRead>> {
    Ok(match path {
        Some(path) => Box::new(BufReader::with_capacity(1 << 16, File::open(path)?)),
        None => Box::new(BufReader::with_capacity(1 << 16, io::stdin())),
    })
}

/// Creates `path` for buffered writing, or stdout when there is none.
pub fn open_output(path: Option<&Path>) -> io::Result<Box<dyn Write>> {
    Ok(match path {
        Some(path) => Box::new(BufWriter::with_capacity(1 << 16, File::create(path)?)),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    })
}
