//! Plain HTTP/1.1 `GET`s over any stream (TCP or the worker's Unix socket), to check what a
//! worker's servers answer on the wire.

use std::io::{Read, Write};

/// `GET path` over `stream`, with `headers` (`Name: value` each); the whole answer, head and
/// body.
pub fn get(mut stream: impl Read + Write, path: &str, headers: &[String]) -> String {
    let headers: String = headers.iter().map(|header| format!("{header}\r\n")).collect();
    let request = format!("GET {path} HTTP/1.1\r\nHost: pfn\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    answer
}

/// The body of an answer.
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}
