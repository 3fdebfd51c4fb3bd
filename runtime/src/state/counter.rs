//! How a counter is stored: eight bytes, a big-endian two's-complement integer, as Pulsar
//! Functions store theirs, so that `get_state` on a counter reads the same bytes.

/// The bytes of a counter's value.
pub fn encode(value: i64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

/// The value of a counter's bytes, or None when they are not eight bytes long.
pub fn decode(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_other_lengths() {
        for value in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(super::decode(&super::encode(value)), Some(value));
        }
        assert_eq!(super::decode(b"1234567"), None);
    }
}
