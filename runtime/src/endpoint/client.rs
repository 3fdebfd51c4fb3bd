//! The client side of the local endpoint, for the `pfn functions` and `pfn topics` commands.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::protocol::{Header, Request};

/// Why a request to the worker failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no worker listening on {path} (start one with `pfn worker`, or pass --worker): {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("talking to the worker on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the worker sent an answer that is not understood: {0}")]
    Answer(String),
    #[error("the worker refused: {0}")]
    Refused(String),
}

/// A connection to a worker's endpoint, carrying one request.
#[derive(Debug)]
pub struct Connection {
    path: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    /// Connects to the worker at `path` and sends `request`.
    pub fn open(path: &Path, request: &Request) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.into(), source })?;
        let io = |source| ClientError::Io { path: path.into(), source };
        let reader = BufReader::with_capacity(1 << 16, stream.try_clone().map_err(io)?);
        let mut connection = Self { path: path.into(), stream, reader };
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Answer(e.to_string()))?;
        line.push(b'\n');
        connection.stream.write_all(&line).map_err(io)?;
        Ok(connection)
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io { path: self.path.clone(), source }
    }

    /// Streams `input` to the worker and closes the sending side (for `produce`).
    pub fn send_all(&mut self, input: &mut dyn Read) -> Result<(), ClientError> {
        let copied = std::io::copy(input, &mut self.stream);
        // The worker may have answered and hung up early (a malformed line, a stopping worker);
        // its header says why, so read that before reporting a broken pipe.
        let shut = self.stream.shutdown(std::net::Shutdown::Write);
        match (copied, shut) {
            (Ok(_), Ok(())) => Ok(()),
            (Err(error), _) | (_, Err(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            (Err(error), _) | (_, Err(error)) => Err(self.io(error)),
        }
    }

    /// Reads the answer's header; a refusal becomes [`ClientError::Refused`].
    pub fn header(&mut self) -> Result<Header, ClientError> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| self.io(e))?;
        if line.is_empty() {
            return Err(ClientError::Answer("the worker closed the connection without answering".into()));
        }
        let header: Header = serde_json::from_str(&line).map_err(|e| ClientError::Answer(format!("{e}: {line}")))?;
        match header.error {
            Some(error) if !header.ok => Err(ClientError::Refused(error)),
            _ => Ok(header),
        }
    }

    /// Copies the rest of the answer (a `consume` stream) to `out`, line by line.
    pub fn copy_lines(&mut self, out: &mut dyn Write) -> Result<u64, ClientError> {
        let mut lines = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.reader.read_until(b'\n', &mut line).map_err(|e| self.io(e))? == 0 {
                break;
            }
            out.write_all(&line).map_err(|e| self.io(e))?;
            lines += 1;
        }
        out.flush().map_err(|e| self.io(e))?;
        Ok(lines)
    }
}

/// Sends a request that has only a header for an answer.
pub fn ask(path: &Path, request: &Request) -> Result<Header, ClientError> {
    Connection::open(path, request)?.header()
}
