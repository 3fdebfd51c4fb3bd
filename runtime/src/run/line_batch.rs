//! Input lines read ahead of their calls, so that an instance in a child process gets them a
//! batch at a time (an in-process instance gets batches of one).

use std::ops::Range;

use crate::{
    execute::{Input, properties},
    io::lines::{Envelope, InputFormat},
};

/// Lines and their message ids, in one buffer each.
#[derive(Debug, Default)]
pub(super) struct LineBatch {
    bytes: Vec<u8>,
    ids: String,
    lines: Vec<(Range<usize>, Range<usize>)>,
    parsed: Vec<Parsed>,
}

/// A line as its input needs it.
#[derive(Debug)]
enum Parsed {
    Raw,
    Json { envelope: Envelope, payload: Vec<u8> },
    Malformed(String),
}

/// One line of a batch: its id, its bytes, and its input or why it has none.
#[derive(Debug)]
pub(super) struct Line<'a> {
    pub id: &'a str,
    pub bytes: &'a [u8],
    pub input: Result<Input<'a>, &'a str>,
}

impl LineBatch {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ids.clear();
        self.lines.clear();
        self.parsed.clear();
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Adds line `number`, parsed as `format` says.
    pub fn push(&mut self, number: u64, line: &[u8], format: InputFormat) {
        let bytes = self.bytes.len()..self.bytes.len() + line.len();
        self.bytes.extend_from_slice(line);
        let start = self.ids.len();
        self.ids.push_str(itoa::Buffer::new().format(number));
        let id = start..self.ids.len();
        self.lines.push((bytes, id));
        self.parsed.push(match format {
            InputFormat::Raw => Parsed::Raw,
            InputFormat::Json => match Envelope::parse(line) {
                Ok(envelope) => Parsed::Json { payload: envelope.payload(), envelope },
                Err(reason) => Parsed::Malformed(reason),
            },
        });
    }

    /// The lines, in order, each with its input on `topic`.
    pub fn lines<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = Line<'a>> + 'a {
        self.lines.iter().zip(&self.parsed).map(move |((bytes, id), parsed)| {
            let (id, bytes) = (&self.ids[id.clone()], &self.bytes[bytes.clone()]);
            let input = match parsed {
                Parsed::Raw => Ok(Input::plain(bytes, topic, id)),
                Parsed::Json { envelope, payload } => Ok(Input {
                    key: envelope.key.as_deref(),
                    properties: properties(envelope.properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                    event_time_ms: envelope.event_time,
                    ..Input::plain(payload, topic, id)
                }),
                Parsed::Malformed(reason) => Err(reason.as_str()),
            };
            Line { id, bytes, input }
        })
    }
}
