//! What the worker does for a child while it calls: answers its state asks from the
//! instance's state, and records its plugin's log events as the instance's.

use std::io;

use super::{
    child::ChildProcess,
    wire::{StateAnswer, StateAsk, ToChild},
};
use crate::{
    context::{StateAccess, record_plugin_event},
    plugin_log::{self, InstanceLog},
    state::StateError,
};

/// Serves `ask` from `state`, answering the child when the ask wants an answer.
pub(super) fn answer_state(
    state: Option<&dyn StateAccess>,
    child: &mut ChildProcess,
    ask: StateAsk<'_>,
) -> io::Result<()> {
    let Some(state) = state else {
        let refused = StateAnswer::Failed { invalid_argument: false, message: "state is not available".to_owned() };
        return if ask.is_answered() { child.send(&ToChild::State(refused)) } else { Ok(()) };
    };
    let failed = |error: StateError| StateAnswer::Failed {
        invalid_argument: error.is_invalid_argument(),
        message: error.to_string(),
    };
    match ask {
        StateAsk::Get(key) => {
            let value = state.get(key);
            let answer = match &value {
                Ok(value) => StateAnswer::Value(value.as_deref()),
                Err(error) => failed(error.clone()),
            };
            child.send(&ToChild::State(answer))
        }
        StateAsk::Incr(key, amount) => {
            let answer = state.incr(key, amount).map_or_else(failed, StateAnswer::Counter);
            child.send(&ToChild::State(answer))
        }
        StateAsk::GetCounter(key) => {
            let answer = state.get_counter(key).map_or_else(failed, StateAnswer::Counter);
            child.send(&ToChild::State(answer))
        }
        StateAsk::List { prefix, start_after, limit } => {
            let keys = state.list(prefix, start_after, limit as usize);
            let answer = match &keys {
                Ok(keys) => StateAnswer::Keys(keys.iter().map(String::as_str).collect()),
                Err(error) => failed(error.clone()),
            };
            child.send(&ToChild::State(answer))
        }
        StateAsk::Put(key, value) => log_refused(state.put(key, value)),
        StateAsk::Delete(key) => log_refused(state.delete(key)),
        StateAsk::DeletePrefix(prefix) => log_refused(state.delete_prefix(prefix)),
        StateAsk::EndCall(succeeded) => {
            state.end_call(succeeded);
            Ok(())
        }
    }
}

/// Records a log event of the child's plugin as `log`'s instance's.
pub(super) fn record_log(log: Option<&InstanceLog>, level: u8, target: &str, message: &str, fields: &[(&str, &str)]) {
    if let Some(level) = plugin_log::level_of_code(level) {
        let _entered = plugin_log::enter(log);
        record_plugin_event(level, target, message, fields);
    }
}

/// A write the child's call made cannot fail once its key was checked; if it does, it is
/// said in the log (the child did not wait for an answer).
fn log_refused(result: Result<(), StateError>) -> io::Result<()> {
    if let Err(error) = result {
        tracing::warn!(%error, "a state write from the child was refused");
    }
    Ok(())
}
