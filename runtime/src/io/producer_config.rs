//! How a function's producers are built, as Pulsar Functions builds them
//! (`ProducerBuilderFactory`): batching on with a 10 ms maximum publish delay, blocking when
//! the queue is full, no send timeout of its own, and LZ4 compression once a `producer_config`
//! is given. The spec's `producer_config` changes them, with Pulsar's names.

use serde::{Deserialize, Serialize};

/// Pulsar's default for the messages of one batch (`batchingMaxMessages`).
pub const BATCH_MAX_MESSAGES: u32 = 1000;
/// Pulsar's default for the bytes of one batch (`batchingMaxBytes`).
pub const BATCH_MAX_BYTES: usize = 128 * 1024;
/// Pulsar Functions' maximum publish delay of a batch.
pub const BATCH_MAX_PUBLISH_DELAY_MS: u64 = 10;

/// A spec's `producer_config`, for every producer of the function (output, published topics,
/// dead letters, logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Batch messages (default true).
    #[serde(default = "yes")]
    pub batching: bool,
    /// The longest a message waits for its batch to fill (default 10).
    #[serde(default = "max_publish_delay")]
    pub batching_max_publish_delay_ms: u64,
    /// The most messages a producer has waiting for receipts; a send waits for room beyond
    /// that (default: no limit of its own).
    #[serde(default)]
    pub max_pending_messages: Option<u32>,
    /// The compression of batches and messages (default LZ4).
    #[serde(default)]
    pub compression_type: Option<CompressionType>,
    /// How messages are put into batches (default DEFAULT).
    #[serde(default)]
    pub batch_builder: BatchBuilder,
}

fn yes() -> bool {
    true
}

fn max_publish_delay() -> u64 {
    BATCH_MAX_PUBLISH_DELAY_MS
}

/// Pulsar's compression types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CompressionType {
    None,
    Lz4,
    Zlib,
    Zstd,
    Snappy,
}

/// Pulsar's batch builders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchBuilder {
    /// Messages in the order they are sent, whatever their keys.
    #[default]
    Default,
    /// A batch holds one key's messages, so that a Key_Shared subscription can dispatch it to
    /// that key's consumer.
    KeyBased,
}

/// The settings a producer is built with: Pulsar Functions' defaults, changed by a spec's
/// `producer_config` when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerSettings {
    /// The longest a message waits for its batch to fill; `None`: no batching.
    pub batch_delay_ms: Option<u64>,
    pub batch_builder: BatchBuilder,
    pub compression: CompressionType,
    pub max_pending_messages: Option<u32>,
}

impl Default for ProducerSettings {
    /// Pulsar Functions' producers when the function has no `producer_config`.
    fn default() -> Self {
        Self::of(None)
    }
}

impl ProducerSettings {
    /// The settings for a function with `config` (or none).
    pub fn of(config: Option<&ProducerConfig>) -> Self {
        match config {
            None => Self {
                batch_delay_ms: Some(BATCH_MAX_PUBLISH_DELAY_MS),
                batch_builder: BatchBuilder::Default,
                compression: CompressionType::None,
                max_pending_messages: None,
            },
            Some(config) => Self {
                batch_delay_ms: config.batching.then_some(config.batching_max_publish_delay_ms),
                batch_builder: config.batch_builder,
                compression: config.compression_type.unwrap_or(CompressionType::Lz4),
                max_pending_messages: config.max_pending_messages.filter(|&pending| pending > 0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pulsar_functions_and_a_config_brings_lz4() {
        let plain = ProducerSettings::default();
        assert_eq!((plain.batch_delay_ms, plain.compression), (Some(10), CompressionType::None));
        let config: ProducerConfig = toml::from_str("").expect("empty config");
        let configured = ProducerSettings::of(Some(&config));
        assert_eq!((configured.batch_delay_ms, configured.compression), (Some(10), CompressionType::Lz4));
        let config: ProducerConfig = toml::from_str(
            "batching = false\ncompression_type = \"ZSTD\"\nbatch_builder = \"KEY_BASED\"\nmax_pending_messages = 0",
        )
        .expect("config");
        let settings = ProducerSettings::of(Some(&config));
        assert_eq!(settings.batch_delay_ms, None);
        assert_eq!((settings.compression, settings.batch_builder), (CompressionType::Zstd, BatchBuilder::KeyBased));
        assert_eq!(settings.max_pending_messages, None, "0 is Pulsar's no limit");
        assert!(toml::from_str::<ProducerConfig>("batching_max_messages = 5").is_err(), "unknown fields refused");
    }
}
