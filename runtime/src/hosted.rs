//! Where an instance's calls run. Everything above this module (the worker's instance loop,
//! `pfn run`) calls an [`Instance`] the same way, one input at a time, after offering it the
//! batch those inputs come from ([`Instance::prepare`]).

use std::{sync::Arc, time::Duration};

use crate::{
    config::Resources,
    context::{FunctionIdentity, Services},
    execute::{Executed, Input, execute},
    instance::{InitError, PluginInstance},
    loader::Plugin,
    process::{ChildInstance, ProcessHosting},
    vocabulary::{Failure, Runtime},
};

/// How a function's instances are hosted.
#[derive(Debug, Clone, Default)]
pub enum Hosting {
    /// In the calling process, on the instance's own thread.
    #[default]
    InProcess,
    /// Each in a child process of its own.
    Process(Arc<ProcessHosting>),
}

impl Hosting {
    /// The hosting `runtime` names: a child process has `resources` as its limits and is
    /// killed when a call runs past `timeout`.
    pub fn of(runtime: Runtime, resources: Option<Resources>, timeout: Option<Duration>) -> std::io::Result<Self> {
        Ok(match runtime {
            Runtime::Thread => Self::InProcess,
            Runtime::Process => Self::Process(Arc::new(ProcessHosting::new(resources, timeout)?)),
        })
    }

    /// Creates an instance of `plugin`'s function, hosted this way.
    pub fn instantiate(
        &self,
        plugin: &Plugin,
        identity: FunctionIdentity,
        services: Services,
    ) -> Result<Instance, InitError> {
        match self {
            Self::InProcess => plugin.instantiate(identity, services).map(Instance::InProcess),
            Self::Process(hosting) => ChildInstance::start(Arc::clone(hosting), plugin, identity, services)
                .map(|child| Instance::Child(Box::new(child))),
        }
    }
}

/// One instance of a plugin's function, wherever it is hosted.
#[derive(Debug)]
// The in-process variant is called inline per message: kept unboxed.
#[allow(clippy::large_enum_variant)]
pub enum Instance {
    InProcess(PluginInstance),
    Child(Box<ChildInstance>),
}

impl Instance {
    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Plugin {
        match self {
            Self::InProcess(instance) => instance.plugin(),
            Self::Child(instance) => instance.plugin(),
        }
    }

    /// Whether the instance calls faster when given its inputs ahead ([`Self::prepare`]).
    pub fn wants_batches(&self) -> bool {
        match self {
            Self::InProcess(_) => false,
            Self::Child(_) => true,
        }
    }

    /// Offers the inputs about to be called, in order, for the instance to run ahead.
    pub fn prepare(&mut self, inputs: &[Input<'_>]) {
        match self {
            Self::InProcess(_) => {}
            Self::Child(instance) => instance.prepare(inputs),
        }
    }

    /// Calls the function on `input`: what the call came to and what it did.
    #[inline]
    pub fn call(&mut self, input: &Input<'_>) -> Executed<&[u8]> {
        match self {
            Self::InProcess(instance) => execute(instance, input),
            Self::Child(instance) => instance.call(input),
        }
    }

    /// Runs the function's `close`; the instance cannot be used afterwards.
    pub fn close(&mut self) -> Result<(), Failure> {
        match self {
            Self::InProcess(instance) => instance.close(),
            Self::Child(instance) => instance.close(),
        }
    }
}
