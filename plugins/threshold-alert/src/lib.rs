//! Threshold alerts: per key, a moving average (or a count) of the values seen over a time
//! window, kept in the function's state; an alert is emitted once each time it crosses above
//! the threshold, not for every value above it, and the aggregate is recorded as a user metric.
//!
//! User config: `threshold` (required), `aggregate` (`average`, the default, or `count`),
//! `window_ms` (default 60000), `value_field` (default `value`), `key_field` (default: the
//! message key). Times are the messages' event times (else the time of processing).
//!
//! Input:  `{"sensor":"s1","value":31.0}` (key `s1`), with `threshold = 30`
//! Output: `{"aggregate":"average","key":"s1","threshold":30.0,"time_ms":…,"value":31.0}` once,
//!         until the average of the window falls back to 30 or below.

use std::time::{SystemTime, UNIX_EPOCH};

use pfn_abi::{
    Context, Error, Json, StatefulFunction,
    serde::Serialize,
    serde_json::{self, Map, Value},
};

/// An alert: the key crossed the threshold.
#[derive(Debug, PartialEq, Serialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct Alert {
    pub key: String,
    pub aggregate: String,
    pub value: f64,
    pub threshold: f64,
    pub time_ms: i64,
}

/// The function: its settings, read once from user config.
#[derive(Debug)]
pub struct ThresholdAlert {
    threshold: f64,
    count: bool,
    window_ms: i64,
    value_field: String,
    key_field: Option<String>,
}

#[pfn_abi::function]
impl StatefulFunction for ThresholdAlert {
    type Input<'a> = Json<Map<String, Value>>;
    type Output = Result<Option<Json<Alert>>, String>;

    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        let threshold = ctx.user_config_as("threshold")?.ok_or(Error::user("user config `threshold` is missing"))?;
        let aggregate = ctx.user_config_or("aggregate", "average".to_owned())?;
        if aggregate != "average" && aggregate != "count" {
            return Err(Error::user(format!("aggregate {aggregate:?} is neither average nor count")));
        }
        Ok(Self {
            threshold,
            count: aggregate == "count",
            window_ms: ctx.user_config_or("window_ms", 60_000)?,
            value_field: ctx.user_config_or("value_field", "value".to_owned())?,
            key_field: ctx.user_config_as("key_field")?,
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, Json(record): Self::Input<'_>) -> Self::Output {
        let current = ctx.current_record();
        let key = match &self.key_field {
            Some(field) => record.get(field).map(|key| key.as_str().map_or_else(|| key.to_string(), str::to_owned)),
            None => current.and_then(|record| record.key()).map(str::to_owned),
        }
        .ok_or("no key: set key_field or give messages a key")?;
        let value = record
            .get(&self.value_field)
            .and_then(Value::as_f64)
            .ok_or(format!("no number in {}", self.value_field))?;
        let now = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
        let time_ms = current.and_then(|record| record.event_time_ms()).unwrap_or_else(now);

        // The window: (time, value) pairs no older than window_ms before this one.
        let window_key = format!("window/{key}");
        let failed = |error: pfn_abi::ContextError| error.to_string();
        let stored = ctx.get_state(&window_key).map_err(failed)?;
        let mut window: Vec<(i64, f64)> =
            stored.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        window.push((time_ms, value));
        window.retain(|(time, _)| *time > time_ms - self.window_ms);
        let text = serde_json::to_vec(&window).map_err(|error| error.to_string())?;
        ctx.put_state(&window_key, &text).map_err(failed)?;
        let aggregate = if self.count {
            window.len() as f64
        } else {
            window.iter().map(|(_, v)| v).sum::<f64>() / window.len() as f64
        };
        ctx.record_metric(if self.count { "window_count" } else { "window_average" }, aggregate).map_err(failed)?;

        // Alert on the crossing only: remember that the key is above until it falls back.
        let alerting_key = format!("alerting/{key}");
        let was_above = ctx.get_state(&alerting_key).map_err(failed)?.is_some();
        let above = aggregate > self.threshold;
        match (was_above, above) {
            (false, true) => ctx.put_state(&alerting_key, b"1").map_err(failed)?,
            (true, false) => ctx.delete_state(&alerting_key).map_err(failed)?,
            _ => return Ok(None),
        }
        let aggregate_name = if self.count { "count" } else { "average" }.to_owned();
        let alert = Alert { key, aggregate: aggregate_name, value: aggregate, threshold: self.threshold, time_ms };
        Ok(above.then_some(Json(alert)))
    }
}
