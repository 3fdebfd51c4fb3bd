//! The relay's fault injection and its answers of its own, against a fake broker that answers
//! a PING with a PONG and every other frame with one MESSAGE frame without checksum.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use pulsar::proto::{BaseCommand, CommandGetTopicsOfNamespace, CommandMessage, CommandProducer, base_command::Type};

use super::{
    Relay,
    frame::{self, MAGIC_CRC32C},
};

/// Starts the fake broker; it runs until the test process ends.
fn fake_broker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake broker");
    let addr = listener.local_addr().expect("fake broker address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer_each_frame(stream));
        }
    });
    addr
}

fn answer_each_frame(mut stream: TcpStream) {
    let mut request = Vec::new();
    while matches!(frame::read_frame(&mut stream, &mut request), Ok(true)) {
        let is_ping = frame::decode_command(&request).is_ok_and(|command| command.r#type == Type::Ping as i32);
        let answer = if is_ping {
            frame::encode_command(&BaseCommand { r#type: Type::Pong as i32, ..Default::default() })
        } else {
            message_frame()
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// A MESSAGE frame as pulsar-lite sends it, without magic and checksum.
fn message_frame() -> Vec<u8> {
    let command = BaseCommand {
        r#type: Type::Message as i32,
        message: Some(CommandMessage { consumer_id: 1, ..Default::default() }),
        ..Default::default()
    };
    let mut message = frame::encode_command(&command);
    message.extend_from_slice(&0_u32.to_be_bytes()); // metadata size: the relay does not read it
    message.extend_from_slice(b"hello");
    let total = (message.len() - 4) as u32;
    message[..4].copy_from_slice(&total.to_be_bytes());
    message
}

fn connect(relay: &Relay) -> TcpStream {
    let stream = TcpStream::connect(relay.addr()).expect("connect to the relay");
    stream.set_read_timeout(Some(Duration::from_millis(300))).expect("read timeout");
    stream
}

/// Sends `request` and reads the frame it brings back.
fn ask(stream: &mut TcpStream, request: &BaseCommand) -> io::Result<Vec<u8>> {
    stream.write_all(&frame::encode_command(request))?;
    let mut answer = Vec::new();
    if !frame::read_frame(stream, &mut answer)? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(answer)
}

/// Sends one frame and reads the MESSAGE frame it brings back.
fn round_trip(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    stream.write_all(&frame::encode_command(&BaseCommand { r#type: Type::Flow as i32, ..Default::default() }))?;
    let mut message = Vec::new();
    if !frame::read_frame(stream, &mut message)? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(message)
}

/// Whether the relay closed `stream` (end of stream or reset) within a second.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(1))).expect("read timeout");
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
    }
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn relays_and_inserts_the_checksum() {
    let relay = Relay::start(fake_broker()).expect("relay");
    let mut client = connect(&relay);
    for _ in 0..3 {
        let message = round_trip(&mut client).expect("message through the relay");
        let command_size = u32::from_be_bytes(message[4..8].try_into().expect("4 bytes")) as usize;
        let start = 8 + command_size;
        assert_eq!(message[start..start + 2], MAGIC_CRC32C.to_be_bytes());
    }
    let stats = relay.stats();
    assert_eq!((stats.connections, stats.frames, stats.checksums_inserted), (1, 3, 3));
}

#[test]
fn pause_holds_frames_back_until_resumed() {
    let relay = Relay::start(fake_broker()).expect("relay");
    let mut client = connect(&relay);
    round_trip(&mut client).expect("before the pause");
    relay.set_paused(true);
    let held = round_trip(&mut client).expect_err("nothing arrives while paused");
    assert!(matches!(held.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{held}");
    relay.set_paused(false);
    let mut message = Vec::new();
    assert!(frame::read_frame(&mut client, &mut message).expect("the held frame"));
    round_trip(&mut client).expect("after the pause");
}

#[test]
fn pause_after_messages_lets_exactly_that_many_through() {
    let relay = Relay::start(fake_broker()).expect("relay");
    relay.pause_after_messages(2);
    let mut client = connect(&relay);
    round_trip(&mut client).expect("first message");
    round_trip(&mut client).expect("second message");
    round_trip(&mut client).expect_err("the third is held");
    assert_eq!(relay.stats().checksums_inserted, 3, "read from the broker, not passed on");
    relay.set_paused(false);
    let mut message = Vec::new();
    assert!(frame::read_frame(&mut client, &mut message).expect("the held frame"));
}

#[test]
fn cut_all_closes_open_connections_only() {
    let relay = Relay::start(fake_broker()).expect("relay");
    let mut first = connect(&relay);
    let mut second = connect(&relay);
    round_trip(&mut first).expect("first");
    round_trip(&mut second).expect("second");
    relay.cut_all();
    assert!(closed(&mut first) && closed(&mut second), "cut connections are closed");
    wait_for("no open connection", || relay.open_connections() == 0);
    round_trip(&mut connect(&relay)).expect("a new connection after the cut");
}

#[test]
fn refuse_closes_new_connections_while_set() {
    let relay = Relay::start(fake_broker()).expect("relay");
    let mut open = connect(&relay);
    round_trip(&mut open).expect("before refusing");
    relay.refuse(true);
    assert!(closed(&mut connect(&relay)), "refused connection is closed");
    round_trip(&mut open).expect("an open connection is not affected");
    relay.refuse(false);
    round_trip(&mut connect(&relay)).expect("accepted again");
    assert_eq!(relay.stats().connections, 2);
}

#[test]
fn a_broker_that_is_down_closes_the_client() {
    let gone = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let relay = Relay::start(gone).expect("relay");
    assert!(closed(&mut connect(&relay)));
}

#[test]
fn the_relay_lists_the_topics_its_clients_named_when_asked_for_a_namespace() {
    let relay = Relay::start(fake_broker()).expect("relay");
    let mut client = connect(&relay);
    for topic in ["persistent://a/b/in-1", "persistent://a/bc/in-2", "persistent://a/b/in-3"] {
        let producer = CommandProducer { topic: topic.into(), ..Default::default() };
        ask(
            &mut client,
            &BaseCommand { r#type: Type::Producer as i32, producer: Some(producer), ..Default::default() },
        )
        .expect("producer answered");
    }
    let request = CommandGetTopicsOfNamespace { request_id: 8, namespace: "a/b".into(), ..Default::default() };
    let request = BaseCommand {
        r#type: Type::GetTopicsOfNamespace as i32,
        get_topics_of_namespace: Some(request),
        ..Default::default()
    };
    let answer = frame::decode_command(&ask(&mut client, &request).expect("an answer")).expect("decodes");
    let listed = answer.get_topics_of_namespace_response.expect("a topics answer");
    assert_eq!(listed.request_id, 8);
    assert_eq!(listed.topics, ["persistent://a/b/in-1", "persistent://a/b/in-3"]);
    assert_eq!(relay.stats().namespaces_listed, 1);
    round_trip(&mut client).expect("the connection goes on");
}
