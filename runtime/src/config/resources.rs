//! What each instance of a function may use, as Pulsar Functions name it: `cpu` cores, `ram`
//! and `disk` in bytes. The Kubernetes manifests request and limit them; the thread runtime
//! shares one process and does not enforce them.

use serde::{Deserialize, Serialize};

use super::Problem;

/// An instance's share of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (fractions allowed: 0.5 is half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<u64>,
    /// Local disk, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

impl Resources {
    /// What is wrong with them, if anything.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.cpu.is_some_and(|cpu| !(cpu.is_finite() && cpu > 0.0)) {
            problems.push(Problem { field: "resources", reason: "cpu must be a positive number of cores".into() });
        }
        for (name, bytes) in [("ram", self.ram), ("disk", self.disk)] {
            if bytes == Some(0) {
                problems
                    .push(Problem { field: "resources", reason: format!("{name} must be a positive number of bytes") });
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::config::FunctionSpec;

    fn spec(resources: serde_json::Value) -> FunctionSpec {
        let spec = serde_json::json!({"name": "f", "plugin": "p", "inputs": ["in"], "resources": resources});
        serde_json::from_value(spec).expect("a spec")
    }

    #[test]
    fn resources_read_pulsars_names_and_refuse_what_cannot_be_given() {
        let given = spec(serde_json::json!({"cpu": 0.5, "ram": 268_435_456_u64, "disk": 1_073_741_824_u64}));
        assert!(given.validate().is_ok());
        assert_eq!(given.resources.and_then(|resources| resources.ram), Some(268_435_456));
        let refused = spec(serde_json::json!({"cpu": 0.0, "ram": 0})).validate().expect_err("refused");
        let text = refused.to_string();
        assert!(text.contains("cpu must be a positive") && text.contains("ram must be a positive"), "{text}");
    }
}
