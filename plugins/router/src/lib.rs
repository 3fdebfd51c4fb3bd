//! Dynamic routing: publishes each JSON record, as it came (key and properties kept), to the
//! topic of the first route whose field has the given value, or to the default topic. The
//! function has no output of its own; an input is acknowledged once its record is on its topic.
//!
//! User config: `routes`, a list of `{field, equals, topic}`, and `default_topic`.
//!
//! With `routes = [{field = "type", equals = "payment", topic = "payments"}]` and
//! `default_topic = "other"`: `{"type":"payment","amount":5}` goes to `payments`, anything else
//! to `other`; a line that is not a JSON object is dead-lettered.

use pfn_abi::{
    Context, Error, Message, StatefulFunction,
    serde::Deserialize,
    serde_json::{Map, Value},
};

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct Route {
    pub field: String,
    pub equals: Value,
    pub topic: String,
}

/// The function: its routes, read once from user config.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    default_topic: String,
}

impl Router {
    /// The topic `record` goes to.
    pub fn topic_of(&self, record: &Map<String, Value>) -> &str {
        let matches = |route: &&Route| record.get(&route.field) == Some(&route.equals);
        self.routes.iter().find(matches).map_or(&self.default_topic, |route| &route.topic)
    }
}

#[pfn_abi::function]
impl StatefulFunction for Router {
    type Input<'a> = &'a str;
    type Output = Result<(), String>;

    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        let routes = ctx.user_config_or("routes", Vec::new())?;
        let default_topic =
            ctx.user_config_as("default_topic")?.ok_or(Error::user("user config `default_topic` is missing"))?;
        Ok(Self { routes, default_topic })
    }

    fn process(&mut self, ctx: &mut Context<'_>, input: &str) -> Self::Output {
        let record: Map<String, Value> =
            pfn_abi::serde_json::from_str(input).map_err(|error| format!("not a JSON object: {error}"))?;
        let topic = self.topic_of(&record);
        let current = ctx.current_record();
        let properties: Vec<(&str, &str)> = current.iter().flat_map(|record| record.properties()).collect();
        let message = Message {
            key: current.and_then(|record| record.key()),
            properties: &properties,
            event_time_ms: current.and_then(|record| record.event_time_ms()),
            ..Message::new(topic, input.as_bytes())
        };
        ctx.publish_message(&message).map_err(|error| format!("publish to {topic}: {error}"))
    }
}
