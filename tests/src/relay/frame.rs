//! Pulsar wire frames: reading them off a stream, encoding a command, the rewrites the relay
//! makes on the way from pulsar-lite to the client, and what it reads in the client's frames.
//!
//! A frame is `[u32 total size][u32 command size][BaseCommand]`, and for the payload commands
//! (MESSAGE, SEND) `[u16 magic 0x0e01][u32 CRC32C][u32 metadata size][metadata][payload]` after
//! it, the checksum covering everything after itself. Integers are big-endian; the total size
//! counts everything after its own field. The magic and checksum are optional in the protocol,
//! pulsar-lite leaves them out, and the `pulsar` crate reads the six bytes after the command as
//! magic and checksum whether they are there or not.

use std::io::{self, Read};

use prost::Message as _;
use pulsar::proto::{
    BaseCommand, CommandGetTopicsOfNamespaceResponse, base_command::Type, command_get_topics_of_namespace::Mode,
};

/// The magic number that announces a CRC32C checksum in a payload frame.
pub const MAGIC_CRC32C: u16 = 0x0e01;

/// Frames above this size are refused as garbage (pulsar-lite's own limit is 5 MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// What a client's frame means to the relay (see [`inspect_client_frame`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Anything the relay only passes on.
    Other,
    /// A SUBSCRIBE naming a topic, which exists from then on.
    NamesTopic(String),
    /// A PRODUCER: its id on the connection, its request and its topic, which exists from
    /// then on.
    Producer { producer_id: u64, request_id: u64, topic: String },
    /// A GET_TOPICS_OF_NAMESPACE, which pulsar-lite does not answer.
    TopicsOfNamespace { request_id: u64, namespace: String, persistent_only: bool },
}

/// Reads what the relay needs from one frame a client sent.
pub fn inspect_client_frame(frame: &[u8]) -> io::Result<ClientFrame> {
    let (command, _) = split(frame)?;
    let kind = command_type(command);
    let named = [Type::Producer as i32, Type::Subscribe as i32, Type::GetTopicsOfNamespace as i32];
    if !kind.is_some_and(|kind| named.contains(&kind)) {
        return Ok(ClientFrame::Other);
    }
    let command = decode_command(frame)?;
    if let Some(producer) = command.producer {
        let (producer_id, request_id) = (producer.producer_id, producer.request_id);
        return Ok(ClientFrame::Producer { producer_id, request_id, topic: producer.topic });
    }
    if let Some(subscribe) = command.subscribe {
        return Ok(ClientFrame::NamesTopic(subscribe.topic));
    }
    Ok(command.get_topics_of_namespace.map_or(ClientFrame::Other, |request| ClientFrame::TopicsOfNamespace {
        request_id: request.request_id,
        namespace: request.namespace,
        persistent_only: request.mode.unwrap_or(0) == Mode::Persistent as i32,
    }))
}

/// A GET_TOPICS_OF_NAMESPACE_RESPONSE listing `topics`.
pub fn topics_of_namespace_answer(request_id: u64, topics: Vec<String>) -> Vec<u8> {
    encode_command(&BaseCommand {
        r#type: Type::GetTopicsOfNamespaceResponse as i32,
        get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
            request_id,
            topics,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A PING, which the broker answers with a PONG.
pub fn ping() -> Vec<u8> {
    encode_command(&BaseCommand { r#type: Type::Ping as i32, ping: Some(Default::default()), ..Default::default() })
}

/// What [`rewrite_broker_frame`] did to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Passed on byte for byte.
    Unchanged,
    /// A MESSAGE frame that got the magic and checksum inserted.
    ChecksumInserted,
    /// A lookup response now pointing at the relay.
    LookupRedirected,
    /// A send receipt, passed on byte for byte (told apart so that the relay can count them).
    Receipt,
    /// A PONG, passed on byte for byte unless the relay puts an answer of its own in its place.
    Pong,
}

/// Reads one whole frame, size field included, into `frame` (replacing its contents).
/// Returns `Ok(false)` on a clean end of stream before the frame's first byte.
pub fn read_frame(reader: &mut impl Read, frame: &mut Vec<u8>) -> io::Result<bool> {
    let mut size = [0_u8; 4];
    match reader.read_exact(&mut size) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let total = u32::from_be_bytes(size) as usize;
    if !(4..=MAX_FRAME).contains(&total) {
        return Err(invalid(format!("frame of {total} bytes")));
    }
    frame.clear();
    frame.extend_from_slice(&size);
    frame.resize(4 + total, 0);
    reader.read_exact(&mut frame[4..])?;
    Ok(true)
}

/// Encodes `command` as a frame without payload.
pub fn encode_command(command: &BaseCommand) -> Vec<u8> {
    let size = command.encoded_len();
    let mut frame = Vec::with_capacity(8 + size);
    frame.extend_from_slice(&(size as u32 + 4).to_be_bytes());
    frame.extend_from_slice(&(size as u32).to_be_bytes());
    // Encoding into a Vec cannot run out of space.
    let _ = command.encode(&mut frame);
    frame
}

/// Decodes the command of a whole frame (size field included).
pub fn decode_command(frame: &[u8]) -> io::Result<BaseCommand> {
    let (command, _) = split(frame)?;
    BaseCommand::decode(command).map_err(|e| invalid(format!("command: {e}")))
}

/// The authentication a client's CONNECT carries (method name and data), when `bytes` start
/// with a whole CONNECT frame.
pub fn connect_auth(bytes: &[u8]) -> Option<(Option<String>, Option<Vec<u8>>)> {
    let command = decode_command(bytes).ok()?;
    let connect = command.connect.filter(|_| command.r#type == Type::Connect as i32)?;
    Some((connect.auth_method_name, connect.auth_data))
}

/// Rewrites, in place, one frame the broker sent so that the stock `pulsar` crate takes it:
/// MESSAGE frames without the magic get the magic and CRC32C inserted; lookup responses get
/// `relay_url` as their broker URL, and `tls_url`, when given, as their TLS one. Everything else
/// is left as it is.
pub fn rewrite_broker_frame(frame: &mut Vec<u8>, relay_url: &str, tls_url: Option<&str>) -> io::Result<Rewrite> {
    let (command, payload) = split(frame)?;
    let Some(kind) = command_type(command) else {
        return Ok(Rewrite::Unchanged);
    };
    if kind == Type::Message as i32 {
        if payload.is_empty() || payload.starts_with(&MAGIC_CRC32C.to_be_bytes()) {
            return Ok(Rewrite::Unchanged);
        }
        insert_checksum(frame);
        return Ok(Rewrite::ChecksumInserted);
    }
    if kind == Type::LookupResponse as i32 {
        let mut command = decode_command(frame)?;
        let Some(lookup) = command.lookup_topic_response.as_mut() else {
            return Ok(Rewrite::Unchanged);
        };
        if lookup.broker_service_url.is_none() {
            return Ok(Rewrite::Unchanged);
        }
        lookup.broker_service_url = Some(relay_url.to_owned());
        if let Some(tls_url) = tls_url {
            lookup.broker_service_url_tls = Some(tls_url.to_owned());
        }
        *frame = encode_command(&command);
        return Ok(Rewrite::LookupRedirected);
    }
    if kind == Type::SendReceipt as i32 {
        return Ok(Rewrite::Receipt);
    }
    if kind == Type::Pong as i32 {
        return Ok(Rewrite::Pong);
    }
    Ok(Rewrite::Unchanged)
}

/// The ERROR a broker answers a request with when the topic's name is invalid.
pub fn invalid_topic_answer(request_id: u64, topic: &str) -> Vec<u8> {
    encode_command(&BaseCommand {
        r#type: Type::Error as i32,
        error: Some(pulsar::proto::CommandError {
            request_id,
            error: pulsar::proto::ServerError::InvalidTopicName as i32,
            message: format!("Invalid topic name: {topic}"),
        }),
        ..Default::default()
    })
}

/// The producer a SEND_RECEIPT frame is for; `None` for any other frame.
pub fn receipt_producer(frame: &[u8]) -> Option<u64> {
    let (command, _) = split(frame).ok()?;
    BaseCommand::decode(command).ok()?.send_receipt.map(|receipt| receipt.producer_id)
}

/// One MESSAGE frame the broker sent a client: to which consumer, which entry, how often it
/// was delivered before, and its payload (for a batched entry, the whole batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub consumer_id: u64,
    pub ledger: u64,
    pub entry: u64,
    pub redelivery_count: u32,
    /// The entry's compression, as Pulsar numbers it (0 none, 1 LZ4, 2 ZLIB, 3 ZSTD, 4 SNAPPY).
    pub compression: i32,
    /// How many messages the entry holds (1 when it is not a batch).
    pub messages: i32,
    pub payload: Vec<u8>,
}

/// What a MESSAGE frame (with or without magic and checksum) delivers; `None` for any other
/// frame or one too short for its sizes.
pub fn delivery(frame: &[u8]) -> Option<Delivery> {
    let (command, rest) = split(frame).ok()?;
    let message = BaseCommand::decode(command).ok()?.message?;
    let rest = rest.strip_prefix(&MAGIC_CRC32C.to_be_bytes()).map_or(rest, |after| after.get(4..).unwrap_or_default());
    let metadata_size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let metadata = pulsar::proto::MessageMetadata::decode(rest.get(4..4 + metadata_size)?).ok()?;
    let payload = rest.get(4 + metadata_size..)?.to_vec();
    Some(Delivery {
        consumer_id: message.consumer_id,
        ledger: message.message_id.ledger_id,
        entry: message.message_id.entry_id,
        redelivery_count: message.redelivery_count.unwrap_or(0),
        compression: metadata.compression.unwrap_or(0),
        messages: metadata.num_messages_in_batch.unwrap_or(1),
        payload,
    })
}

/// Inserts magic and checksum in front of the payload part of a MESSAGE frame, whose
/// `[u32 metadata size][metadata][payload]` is then exactly what the checksum covers.
fn insert_checksum(frame: &mut Vec<u8>) {
    let payload_start = 8 + command_size(frame);
    let crc = crc32c::crc32c(&frame[payload_start..]);
    let mut header = [0_u8; 6];
    header[..2].copy_from_slice(&MAGIC_CRC32C.to_be_bytes());
    header[2..].copy_from_slice(&crc.to_be_bytes());
    frame.splice(payload_start..payload_start, header);
    let total = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&total.to_be_bytes());
}

/// The command bytes and what follows them (the payload part, empty for most commands).
fn split(frame: &[u8]) -> io::Result<(&[u8], &[u8])> {
    if frame.len() < 8 {
        return Err(invalid(format!("frame of {} bytes has no command size", frame.len())));
    }
    let size = command_size(frame);
    let rest = &frame[8..];
    if size > rest.len() {
        return Err(invalid(format!("command of {size} bytes in a frame of {}", frame.len())));
    }
    Ok(rest.split_at(size))
}

fn command_size(frame: &[u8]) -> usize {
    u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize
}

/// The `type` field of an encoded `BaseCommand` without decoding the rest: encoders write the
/// required field 1 first (tag byte 0x08, then a varint). Falls back to a full decode.
fn command_type(command: &[u8]) -> Option<i32> {
    if let Some((&0x08, rest)) = command.split_first() {
        let mut value: u64 = 0;
        for (i, &byte) in rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return i32::try_from(value).ok();
            }
        }
    }
    BaseCommand::decode(command).ok().map(|c| c.r#type)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use pulsar::proto::{CommandLookupTopicResponse, CommandMessage, MessageIdData, MessageMetadata};

    use super::*;

    fn message_frame(with_checksum: bool) -> (Vec<u8>, Vec<u8>) {
        let command = BaseCommand {
            r#type: Type::Message as i32,
            message: Some(CommandMessage {
                consumer_id: 7,
                message_id: MessageIdData { ledger_id: 1, entry_id: 2, ..Default::default() },
                ..Default::default()
            }),
            ..Default::default()
        };
        let metadata = MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 3,
            publish_time: 4,
            partition_key: Some("key-3".into()),
            ..Default::default()
        };
        let mut covered = Vec::new();
        covered.extend_from_slice(&(metadata.encoded_len() as u32).to_be_bytes());
        metadata.encode(&mut covered).expect("encode metadata");
        covered.extend_from_slice(b"payload bytes");
        let mut frame = encode_command(&command);
        if with_checksum {
            frame.extend_from_slice(&MAGIC_CRC32C.to_be_bytes());
            frame.extend_from_slice(&crc32c::crc32c(&covered).to_be_bytes());
        }
        frame.extend_from_slice(&covered);
        let total = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&total.to_be_bytes());
        (frame, covered)
    }

    #[test]
    fn a_delivery_is_read_with_or_without_the_checksum() {
        for with_checksum in [false, true] {
            let (frame, _) = message_frame(with_checksum);
            let expected = Delivery {
                consumer_id: 7,
                ledger: 1,
                entry: 2,
                redelivery_count: 0,
                compression: 0,
                messages: 1,
                payload: b"payload bytes".to_vec(),
            };
            assert_eq!(delivery(&frame), Some(expected), "with checksum: {with_checksum}");
        }
        assert_eq!(delivery(&ping()), None, "a PING delivers nothing");
    }

    #[test]
    fn message_without_magic_gets_magic_and_crc32c() {
        let (mut frame, covered) = message_frame(false);
        let before = frame.clone();
        let rewrite = rewrite_broker_frame(&mut frame, "pulsar://127.0.0.1:1", None).expect("rewrite");
        assert_eq!(rewrite, Rewrite::ChecksumInserted);
        assert_eq!(frame.len(), before.len() + 6);
        let total = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(total, frame.len() - 4, "total size counts everything after itself");
        assert_eq!(total, u32::from_be_bytes(before[..4].try_into().expect("4 bytes")) as usize + 6);
        let start = 8 + command_size(&frame);
        assert_eq!(frame[4..start], before[4..start], "command untouched");
        assert_eq!(frame[start..start + 2], [0x0e, 0x01]);
        let crc = u32::from_be_bytes(frame[start + 2..start + 6].try_into().expect("4 bytes"));
        assert_eq!(crc, crc32c::crc32c(&covered));
        assert_eq!(frame[start + 6..], covered[..]);
        // The same frame with the checksum built by hand is what came out.
        assert_eq!(frame, message_frame(true).0);
    }

    #[test]
    fn message_with_magic_is_untouched() {
        let (mut frame, _) = message_frame(true);
        let before = frame.clone();
        let rewrite = rewrite_broker_frame(&mut frame, "pulsar://127.0.0.1:1", None).expect("rewrite");
        assert_eq!(rewrite, Rewrite::Unchanged);
        assert_eq!(frame, before);
    }

    #[test]
    fn lookup_response_points_at_the_relay() {
        let command = BaseCommand {
            r#type: Type::LookupResponse as i32,
            lookup_topic_response: Some(CommandLookupTopicResponse {
                broker_service_url: Some("pulsar://127.0.0.1:6650".into()),
                request_id: 9,
                authoritative: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut frame = encode_command(&command);
        let tls = Some("pulsar+ssl://127.0.0.1:4243");
        let rewrite = rewrite_broker_frame(&mut frame, "pulsar://127.0.0.1:4242", tls).expect("rewrite");
        assert_eq!(rewrite, Rewrite::LookupRedirected);
        let decoded = decode_command(&frame).expect("decode");
        let lookup = decoded.lookup_topic_response.expect("lookup response");
        assert_eq!(lookup.broker_service_url.as_deref(), Some("pulsar://127.0.0.1:4242"));
        assert_eq!(lookup.broker_service_url_tls.as_deref(), tls);
        assert_eq!((lookup.request_id, lookup.authoritative), (9, Some(true)));
    }

    #[test]
    fn other_commands_pass_byte_for_byte() {
        let command = BaseCommand { r#type: Type::Ping as i32, ping: Some(Default::default()), ..Default::default() };
        let mut frame = encode_command(&command);
        let before = frame.clone();
        assert_eq!(rewrite_broker_frame(&mut frame, "pulsar://x:1", None).expect("rewrite"), Rewrite::Unchanged);
        assert_eq!(frame, before);
    }

    #[test]
    fn send_receipts_pass_byte_for_byte_and_are_told_apart() {
        let command = BaseCommand {
            r#type: Type::SendReceipt as i32,
            send_receipt: Some(pulsar::proto::CommandSendReceipt {
                producer_id: 1,
                sequence_id: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut frame = encode_command(&command);
        let before = frame.clone();
        assert_eq!(rewrite_broker_frame(&mut frame, "pulsar://x:1", None).expect("rewrite"), Rewrite::Receipt);
        assert_eq!(frame, before);
        assert_eq!(receipt_producer(&frame), Some(1));
    }

    #[test]
    fn connect_auth_reads_the_method_and_data_of_a_connect() {
        let command = BaseCommand {
            r#type: Type::Connect as i32,
            connect: Some(pulsar::proto::CommandConnect {
                auth_method_name: Some("token".into()),
                auth_data: Some(b"secret".to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let frame = encode_command(&command);
        assert_eq!(connect_auth(&frame), Some((Some("token".into()), Some(b"secret".to_vec()))));
        let ping = encode_command(&BaseCommand { r#type: Type::Ping as i32, ..Default::default() });
        assert_eq!(connect_auth(&ping), None);
        assert_eq!(connect_auth(b"m"), None);
    }

    #[test]
    fn client_frames_name_their_topics_and_ask_for_a_namespace() {
        let producer = encode_command(&BaseCommand {
            r#type: Type::Producer as i32,
            producer: Some(pulsar::proto::CommandProducer {
                topic: "persistent://a/b/in".into(),
                producer_id: 7,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            inspect_client_frame(&producer).expect("inspect"),
            ClientFrame::Producer { producer_id: 7, request_id: 0, topic: "persistent://a/b/in".into() }
        );
        let request = encode_command(&BaseCommand {
            r#type: Type::GetTopicsOfNamespace as i32,
            get_topics_of_namespace: Some(pulsar::proto::CommandGetTopicsOfNamespace {
                request_id: 5,
                namespace: "a/b".into(),
                mode: Some(Mode::All as i32),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            inspect_client_frame(&request).expect("inspect"),
            ClientFrame::TopicsOfNamespace { request_id: 5, namespace: "a/b".into(), persistent_only: false }
        );
        assert_eq!(inspect_client_frame(&ping()).expect("inspect"), ClientFrame::Other);

        let answer =
            decode_command(&topics_of_namespace_answer(5, vec!["persistent://a/b/in".into()])).expect("decode");
        assert_eq!(answer.r#type, Type::GetTopicsOfNamespaceResponse as i32);
        let listed = answer.get_topics_of_namespace_response.expect("a response");
        assert_eq!((listed.request_id, listed.topics), (5, vec!["persistent://a/b/in".to_owned()]));
        let mut pong = encode_command(&BaseCommand { r#type: Type::Pong as i32, ..Default::default() });
        assert_eq!(rewrite_broker_frame(&mut pong, "pulsar://x:1", None).expect("rewrite"), Rewrite::Pong);
    }

    #[test]
    fn read_frame_reads_whole_frames_and_stops_cleanly() {
        let (one, _) = message_frame(false);
        let two = encode_command(&BaseCommand { r#type: Type::Pong as i32, ..Default::default() });
        let stream = [one.clone(), two.clone()].concat();
        let mut reader = &stream[..];
        let mut frame = Vec::new();
        assert!(read_frame(&mut reader, &mut frame).expect("first"));
        assert_eq!(frame, one);
        assert!(read_frame(&mut reader, &mut frame).expect("second"));
        assert_eq!(frame, two);
        assert!(!read_frame(&mut reader, &mut frame).expect("end"));
    }
}
