//! `pfn topics`: produce to, consume from and look at the topics a worker's functions use,
//! embedded or Pulsar's, through the worker's admin API.

use std::{io::Write, path::Path};

use clap::Subcommand;

use super::remote::{AdminApi, client, print_json, query_name};
use crate::io::{
    lines::{InputFormat, OutputFormat},
    transport::SubscriptionType,
};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Publish one message per stdin line.
    Produce {
        topic: String,
        #[arg(long, value_enum, default_value_t)]
        input_format: InputFormat,
    },
    /// Print messages of a subscription, acknowledging each once printed.
    Consume {
        topic: String,
        #[arg(long, short = 's', default_value = "pfn-cli")]
        subscription: String,
        #[arg(long, value_enum, default_value_t)]
        subscription_type: SubscriptionType,
        /// Stop after this many messages.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// Stop when no message came for this many milliseconds.
        #[arg(long)]
        idle_timeout_ms: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        output_format: OutputFormat,
    },
    /// Create a subscription, so that it keeps every message published from now on.
    CreateSubscription {
        topic: String,
        #[arg(long, short = 's')]
        subscription: String,
        #[arg(long, value_enum, default_value_t)]
        subscription_type: SubscriptionType,
    },
    /// Print a topic's counts (JSON).
    Stats { topic: String },
}

pub fn topics(command: TopicsCommand, socket: &Path, api: &AdminApi) -> anyhow::Result<()> {
    let admin = client(socket, api);
    match command {
        TopicsCommand::Produce { topic, input_format } => {
            let query = [("topic", topic.clone()), ("format", query_name(&input_format))];
            let answer = admin.post_reader("/pfn/v1/topics/produce", &query, &mut std::io::stdin().lock())?;
            eprintln!("produced {} messages to {topic}", answer["produced"].as_u64().unwrap_or(0));
            Ok(())
        }
        TopicsCommand::Consume { topic, subscription, subscription_type, count, idle_timeout_ms, output_format } => {
            let mut query = vec![
                ("topic", topic),
                ("subscription", subscription),
                ("subscription_type", query_name(&subscription_type)),
                ("format", query_name(&output_format)),
            ];
            query.extend(count.map(|count| ("count", count.to_string())));
            query.extend(idle_timeout_ms.map(|idle| ("idle_timeout_ms", idle.to_string())));
            let mut messages = admin.get_stream("/pfn/v1/topics/consume", &query)?;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut messages, &mut out)?;
            out.flush()?;
            Ok(())
        }
        TopicsCommand::CreateSubscription { topic, subscription, subscription_type } => {
            let query = [
                ("topic", topic),
                ("subscription", subscription),
                ("subscription_type", query_name(&subscription_type)),
            ];
            Ok(admin.put_empty("/pfn/v1/topics/subscription", &query)?)
        }
        TopicsCommand::Stats { topic } => print_json(&admin.get_json("/pfn/v1/topics/stats", &[("topic", topic)])?),
    }
}
