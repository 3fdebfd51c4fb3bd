//! One message per line: raw lines, or JSON envelopes carrying key, properties and event time.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, Write},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde::{Deserialize, Serialize};

use crate::io::transport::Delivery;

/// How input lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Each line is a payload.
    #[default]
    Raw,
    /// Each line is `{"value": ..., "key": ..., "properties": {...}, "event_time": ms}`; a
    /// string value is the payload as is, any other JSON value is the payload serialised.
    Json,
}

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Each result as it is, followed by a newline.
    #[default]
    Raw,
    /// Each result as `{"value": "..."}` (or `{"value_base64": "..."}` when not UTF-8).
    Json,
}

/// Reads lines into one reused buffer.
pub struct LineReader {
    reader: Box<dyn BufRead>,
    line: Vec<u8>,
    number: u64,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader").field("number", &self.number).finish_non_exhaustive()
    }
}

impl LineReader {
    pub fn new(reader: Box<dyn BufRead>) -> Self {
        Self { reader, line: Vec::with_capacity(4096), number: 0 }
    }

    /// The next line without its line ending, and its 1-based number; `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Ok(None);
        }
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
        }
        self.number += 1;
        Ok(Some((self.number, &self.line)))
    }
}

/// A message read from a JSON line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub value: serde_json::Value,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub event_time: Option<i64>,
}

impl Envelope {
    /// Parses a JSON line.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(line).map_err(|e| format!("malformed JSON message: {e}"))
    }

    /// The payload bytes: a string value as is, anything else serialised.
    pub fn payload(&self) -> Vec<u8> {
        match &self.value {
            serde_json::Value::String(text) => text.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        }
    }
}

/// A payload as JSON: a string when it is UTF-8, else base64.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PayloadJson<'a> {
    Text { value: &'a str },
    Binary { value_base64: String },
}

impl<'a> PayloadJson<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        match std::str::from_utf8(payload) {
            Ok(value) => Self::Text { value },
            Err(_) => Self::Binary { value_base64: BASE64.encode(payload) },
        }
    }
}

/// Writes one result in `format`.
pub fn write_result(out: &mut dyn Write, format: OutputFormat, payload: &[u8]) -> io::Result<()> {
    match format {
        OutputFormat::Raw => {
            out.write_all(payload)?;
            out.write_all(b"\n")
        }
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, &PayloadJson::new(payload))?;
            out.write_all(b"\n")
        }
    }
}

/// A consumed message as a JSON line.
#[derive(Debug, Serialize)]
pub struct ConsumedJson<'a> {
    pub message_id: String,
    pub topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<i64>,
    pub redelivery_count: u32,
    #[serde(flatten)]
    pub payload: PayloadJson<'a>,
}

impl<'a> ConsumedJson<'a> {
    pub fn new(delivery: &'a Delivery) -> Self {
        let message = &delivery.message;
        Self {
            message_id: delivery.message_id.to_string(),
            topic: &delivery.topic,
            key: message.key.as_deref(),
            properties: message.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            event_time: message.event_time_ms,
            redelivery_count: delivery.redelivery_count,
            payload: PayloadJson::new(&message.payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_without_endings() {
        let mut reader = LineReader::new(Box::new(&b"a\r\nb\n\nc"[..]));
        let mut seen = Vec::new();
        while let Some((number, line)) = reader.next_line().expect("in-memory read") {
            seen.push((number, line.to_vec()));
        }
        assert_eq!(seen, vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"".to_vec()), (4, b"c".to_vec())]);
    }

    #[test]
    fn envelopes_carry_metadata() {
        let envelope = Envelope::parse(br#"{"value":{"n":1},"key":"k","properties":{"a":"b"},"event_time":5}"#)
            .expect("valid envelope");
        assert_eq!(envelope.payload(), br#"{"n":1}"#);
        assert_eq!(envelope.key.as_deref(), Some("k"));
        assert_eq!(envelope.event_time, Some(5));
        assert!(Envelope::parse(b"not json").is_err());
    }

    #[test]
    fn binary_results_are_base64_in_json() {
        let mut out = Vec::new();
        write_result(&mut out, OutputFormat::Json, &[0xff, 0x00]).expect("in-memory write");
        assert_eq!(out, b"{\"value_base64\":\"/wA=\"}\n");
    }
}
