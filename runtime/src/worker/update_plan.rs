//! How a changed spec is applied to a running function with the least disturbance: a new log
//! level, user config or secrets between two messages, a new parallelism by adding or draining
//! instances, and anything else by restarting the function's instances after they drain.

use crate::config::FunctionSpec;

/// What applying a new spec takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct UpdatePlan {
    /// The log level changed: it applies at once.
    pub log_level: bool,
    /// User config or secrets changed: every instance is initialised anew and switched to
    /// between two messages.
    pub reconfigure: bool,
    /// The number of instances changed, from the first to the second.
    pub parallelism: Option<(u32, u32)>,
    /// Anything else changed (topics, subscription, guarantees, plugin...): the instances drain
    /// and the function starts again.
    pub restart: bool,
}

impl UpdatePlan {
    pub fn between(running: &FunctionSpec, new: &FunctionSpec) -> Self {
        let mut rest = new.clone();
        rest.log_level.clone_from(&running.log_level);
        rest.user_config.clone_from(&running.user_config);
        rest.secrets.clone_from(&running.secrets);
        rest.parallelism = running.parallelism;
        Self {
            log_level: running.log_level != new.log_level,
            reconfigure: running.user_config != new.user_config || running.secrets != new.secrets,
            parallelism: (running.parallelism != new.parallelism).then_some((running.parallelism, new.parallelism)),
            restart: rest != *running,
        }
    }

    /// Whether the spec is the one running.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// In a word or two, for logs and the API's answer.
    pub fn describe(&self) -> String {
        if self.restart {
            return "restarted".into();
        }
        let mut parts = Vec::new();
        if self.log_level {
            parts.push("log level".to_owned());
        }
        if self.reconfigure {
            parts.push("configuration".to_owned());
        }
        if let Some((from, to)) = self.parallelism {
            parts.push(format!("parallelism {from} -> {to}"));
        }
        if parts.is_empty() { "unchanged".into() } else { format!("{} applied live", parts.join(", ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FunctionSpec {
        serde_json::from_value(serde_json::json!({"name": "f", "plugin": "p", "inputs": ["in"]})).expect("spec")
    }

    #[test]
    fn live_changes_do_not_restart() {
        let running = spec();
        let mut new = running.clone();
        new.log_level = Some("debug".into());
        new.user_config.insert("limit".into(), 5.into());
        new.parallelism = 3;
        let plan = UpdatePlan::between(&running, &new);
        assert_eq!(plan, UpdatePlan { log_level: true, reconfigure: true, parallelism: Some((1, 3)), restart: false });
        assert_eq!(plan.describe(), "log level, configuration, parallelism 1 -> 3 applied live");
    }

    #[test]
    fn a_new_input_restarts_and_the_same_spec_changes_nothing() {
        let running = spec();
        let mut new = running.clone();
        new.inputs.push("more".into());
        assert!(UpdatePlan::between(&running, &new).restart);
        assert!(UpdatePlan::between(&running, &running).is_empty());
    }
}
