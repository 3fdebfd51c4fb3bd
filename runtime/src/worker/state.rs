//! Where a function is in its life, as status reports it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A function's state. Status shows it as text (`running`, `failed: <why>`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum FunctionState {
    /// No plugin file satisfies the spec yet.
    WaitingForPlugin,
    Running,
    /// The function could not start; the reason says why.
    Failed(String),
    /// Stopped, with calls that have not returned yet.
    Stopping,
    Stopped,
    Deleted,
}

impl fmt::Display for FunctionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WaitingForPlugin => f.write_str("waiting for plugin"),
            Self::Running => f.write_str("running"),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
            Self::Stopping => f.write_str("stopping"),
            Self::Stopped => f.write_str("stopped"),
            Self::Deleted => f.write_str("deleted"),
        }
    }
}

impl From<FunctionState> for String {
    fn from(state: FunctionState) -> Self {
        state.to_string()
    }
}

impl From<String> for FunctionState {
    fn from(text: String) -> Self {
        match text.as_str() {
            "waiting for plugin" => Self::WaitingForPlugin,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "deleted" => Self::Deleted,
            _ => Self::Failed(text.strip_prefix("failed: ").map_or_else(|| text.clone(), str::to_owned)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_text() {
        let states = [
            FunctionState::WaitingForPlugin,
            FunctionState::Running,
            FunctionState::Failed("init failed: boom".into()),
            FunctionState::Stopping,
            FunctionState::Stopped,
            FunctionState::Deleted,
        ];
        for state in states {
            assert_eq!(FunctionState::from(state.to_string()), state);
        }
    }
}
