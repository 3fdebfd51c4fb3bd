//! What the worker and a child say to each other over their socket: length-prefixed frames
//! (a little-endian `u32`, then the frame in `postcard`), borrowed where they are read.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::vocabulary::Failure;

/// The most a frame may hold: a batch of large messages fits; a corrupt length does not.
const MAX_FRAME: usize = 1 << 30;

/// What a child needs to host its instance.
#[derive(Debug, Serialize, Deserialize)]
pub struct Init<'a> {
    /// The private copy of the plugin to open, and the digest it must have.
    pub plugin: &'a str,
    pub sha256: &'a str,
    pub tenant: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub instance_id: u32,
    pub num_instances: u32,
    pub input_topics: Vec<&'a str>,
    pub output_topic: Option<&'a str>,
    pub user_config: Vec<(&'a str, &'a str)>,
    /// The function's secrets, resolved by the worker.
    pub secrets: Vec<(&'a str, &'a str)>,
    /// Which services the worker serves over the socket.
    pub state: bool,
    pub metrics: bool,
    /// The most verbose plugin log level forwarded (1 error ... 5 trace, 0 none).
    pub log_level: u8,
}

/// One input, as [`crate::execute::Input`] has it.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireInput<'a> {
    #[serde(with = "serde_bytes")]
    pub payload: &'a [u8],
    pub key: Option<&'a str>,
    pub properties: Vec<(&'a str, &'a str)>,
    pub event_time_ms: Option<i64>,
    pub topic: &'a str,
    pub message_id: &'a str,
    pub redelivery_count: u32,
}

/// What one call came to.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireOutcome<'a> {
    Output(#[serde(with = "serde_bytes")] &'a [u8]),
    Filtered,
    Failed(Failure),
}

/// A message a call published.
#[derive(Debug, Serialize, Deserialize)]
pub struct WirePublication<'a> {
    pub topic: &'a str,
    #[serde(with = "serde_bytes")]
    pub payload: &'a [u8],
    pub key: Option<&'a str>,
    pub properties: Vec<(&'a str, &'a str)>,
    pub event_time_ms: Option<i64>,
}

/// One call's outcome and effects.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireCalled<'a> {
    #[serde(borrow)]
    pub outcome: WireOutcome<'a>,
    pub acked: bool,
    #[serde(borrow)]
    pub published: Vec<WirePublication<'a>>,
}

/// A state operation the child's instance asks the worker for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum StateAsk<'a> {
    Get(&'a str),
    Put(&'a str, #[serde(with = "serde_bytes")] &'a [u8]),
    Delete(&'a str),
    Incr(&'a str, i64),
    GetCounter(&'a str),
    List {
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: u32,
    },
    DeletePrefix(&'a str),
    /// The call ended; its writes stay when it succeeded. Not answered.
    EndCall(bool),
}

impl StateAsk<'_> {
    /// Whether the child waits for an answer (writes are not answered: they cannot fail once
    /// their key was checked).
    pub fn is_answered(&self) -> bool {
        matches!(self, Self::Get(_) | Self::Incr(..) | Self::GetCounter(_) | Self::List { .. })
    }
}

/// The worker's answer to a [`StateAsk`].
#[derive(Debug, Serialize, Deserialize)]
pub enum StateAnswer<'a> {
    Value(#[serde(with = "serde_bytes")] Option<&'a [u8]>),
    Counter(i64),
    Keys(Vec<&'a str>),
    Failed { invalid_argument: bool, message: String },
}

/// From the worker to a child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild<'a> {
    #[serde(borrow)]
    Init(Init<'a>),
    #[serde(borrow)]
    Batch(Vec<WireInput<'a>>),
    #[serde(borrow)]
    State(StateAnswer<'a>),
    /// The plugin log level changed (see [`Init::log_level`]).
    LogLevel(u8),
    Close,
}

/// From a child to the worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker<'a> {
    Ready,
    InitFailed(Failure),
    #[serde(borrow)]
    State(StateAsk<'a>),
    Log {
        level: u8,
        target: &'a str,
        message: &'a str,
        fields: Vec<(&'a str, &'a str)>,
    },
    /// A batch's calls, in order, and the metric values they recorded.
    Done {
        #[serde(borrow)]
        called: Vec<WireCalled<'a>>,
        metrics: Vec<(&'a str, f64)>,
    },
    Closed(Option<Failure>),
}

/// Encodes as `ToChild::Batch` of the inputs `indices` picks, without collecting them first.
#[derive(Debug)]
pub struct BatchOf<'a, T> {
    pub inputs: &'a [T],
    pub indices: &'a [usize],
    pub wire: fn(&'a T) -> WireInput<'a>,
}

impl<T> Serialize for BatchOf<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The sequence inside the variant.
        struct Inputs<'b, 'a, T>(&'b BatchOf<'a, T>);
        impl<T> Serialize for Inputs<'_, '_, T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let batch = self.0;
                serializer.collect_seq(batch.indices.iter().map(|&index| (batch.wire)(&batch.inputs[index])))
            }
        }
        // `ToChild::Batch` is variant 1.
        serializer.serialize_newtype_variant("ToChild", 1, "Batch", &Inputs(self))
    }
}

/// Writes `frame` to `to`, using `buffer` for the encoding.
pub fn write_frame(to: &mut impl Write, buffer: &mut Vec<u8>, frame: &impl Serialize) -> io::Result<()> {
    buffer.clear();
    buffer.extend_from_slice(&[0; 4]);
    let mut encoded = postcard::to_extend(frame, std::mem::take(buffer)).map_err(io::Error::other)?;
    let length = u32::try_from(encoded.len() - 4).map_err(|_| io::Error::other("frame longer than 4 GiB"))?;
    encoded[..4].copy_from_slice(&length.to_le_bytes());
    let written = to.write_all(&encoded);
    *buffer = encoded;
    written
}

/// Decodes a frame read by [`FrameReader`].
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(frame).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Reads frames, keeping a partial one across read timeouts.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Bytes of `buffer` read so far.
    filled: usize,
    /// Where the frame last handed out ended (dropped before the next read).
    consumed: usize,
}

impl FrameReader {
    /// The next whole frame, reading as needed. `Ok(None)`: the read timed out first (what was
    /// read is kept). A closed stream is `UnexpectedEof`.
    pub fn next(&mut self, from: &mut impl Read) -> io::Result<Option<&[u8]>> {
        if self.consumed > 0 {
            self.buffer.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        loop {
            if let Some(length) = self.complete_frame()? {
                self.consumed = 4 + length;
                return Ok(Some(&self.buffer[4..4 + length]));
            }
            if self.buffer.len() - self.filled < 4096 {
                let wanted = self.wanted().max(self.filled + 64 * 1024);
                self.buffer.resize(wanted, 0);
            }
            match from.read(&mut self.buffer[self.filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(read) => self.filled += read,
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// The length of the frame at the start of the buffer, if all of it is there.
    fn complete_frame(&self) -> io::Result<Option<usize>> {
        let Some(prefix) = self.buffer.get(..4).filter(|_| self.filled >= 4) else { return Ok(None) };
        let length = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if length > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {length} bytes")));
        }
        Ok((self.filled >= 4 + length).then_some(length))
    }

    /// How large the buffer must be for the frame begun in it.
    fn wanted(&self) -> usize {
        match self.buffer.get(..4).filter(|_| self.filled >= 4) {
            Some(prefix) => 4 + u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize,
            None => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_partial_reads() {
        let mut bytes = Vec::new();
        let mut buffer = Vec::new();
        let input = WireInput {
            payload: b"hello",
            key: Some("k"),
            properties: vec![("a", "b")],
            event_time_ms: None,
            topic: "in",
            message_id: "7",
            redelivery_count: 1,
        };
        write_frame(&mut bytes, &mut buffer, &ToChild::Batch(vec![input])).expect("encodes");
        write_frame(&mut bytes, &mut buffer, &ToChild::Close).expect("encodes");
        // A batch encoded from its inputs in place reads back as the same frame.
        let (mut direct, mut collected) = (Vec::new(), Vec::new());
        fn pick(text: &String) -> WireInput<'_> {
            WireInput {
                payload: text.as_bytes(),
                key: None,
                properties: Vec::new(),
                event_time_ms: Some(5),
                topic: "t",
                message_id: text,
                redelivery_count: 0,
            }
        }
        let texts = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let batch = BatchOf { inputs: &texts, indices: &[2, 0], wire: pick };
        write_frame(&mut direct, &mut buffer, &batch).expect("encodes");
        write_frame(&mut collected, &mut buffer, &ToChild::Batch(vec![pick(&texts[2]), pick(&texts[0])]))
            .expect("encodes");
        assert_eq!(direct, collected);
        // A reader that hands out three bytes at a time, then times out once between reads.
        struct Trickle(Vec<u8>, usize, bool);
        impl Read for Trickle {
            fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
                self.2 = !self.2;
                if self.2 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = into.len().min(3).min(self.0.len() - self.1);
                into[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut from = Trickle(bytes, 0, false);
        let mut reader = FrameReader::default();
        let first = loop {
            if let Some(frame) = reader.next(&mut from).expect("reads") {
                break frame.to_vec();
            }
        };
        match decode::<ToChild<'_>>(&first).expect("decodes") {
            ToChild::Batch(inputs) => assert_eq!((inputs[0].payload, inputs[0].key), (&b"hello"[..], Some("k"))),
            other => panic!("not the batch: {other:?}"),
        }
        let second = loop {
            if let Some(frame) = reader.next(&mut from).expect("reads") {
                break frame.to_vec();
            }
        };
        assert!(matches!(decode::<ToChild<'_>>(&second), Ok(ToChild::Close)));
        let end = loop {
            match reader.next(&mut from) {
                Ok(None) => {}
                other => break other.map(|frame| frame.map(<[u8]>::len)),
            }
        };
        assert_eq!(end.map_err(|error| error.kind()), Err(io::ErrorKind::UnexpectedEof));
    }
}
