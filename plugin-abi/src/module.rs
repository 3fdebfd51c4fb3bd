//! The root module every plugin exports, and the macro that exports it.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RVec},
};

use crate::{
    entry,
    ffi::{FfiContext, FfiError, FfiRecord, InstanceHandle, Produced},
    function::Function,
};

/// The version of this interface. A host accepts plugins whose `ABI_VERSION` has the same major
/// (and, while the major is 0, the same minor) as its own.
pub const ABI_VERSION: &str = "1.2.0";

/// The root module of a plugin.
///
/// This is an abi_stable prefix type: it only ever grows by appending fields after
/// `close`, so hosts and plugins built against different minors of this interface still agree
/// on the fields they share.
#[repr(C)]
#[derive(StableAbi)]
#[allow(missing_debug_implementations)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The [`ABI_VERSION`] the plugin was built against.
    pub abi_version: RStr<'static>,
    /// The plugin's name (its Cargo package name).
    pub name: RStr<'static>,
    /// The plugin's version (its Cargo package version, semver).
    pub version: RStr<'static>,
    /// Whether the plugin was built with `panic = "unwind"`; the runtime refuses `abort` builds.
    pub panic_unwind: bool,
    /// Creates an instance: runs the function's `init` with the host context.
    pub new_instance: unsafe extern "C" fn(ctx: &FfiContext) -> RResult<InstanceHandle, FfiError>,
    /// Processes one record. On `Output`, the result bytes are in `out` (cleared by the host).
    pub process: unsafe extern "C" fn(
        instance: InstanceHandle,
        ctx: &FfiContext,
        record: &FfiRecord<'_>,
        out: &mut RVec<u8>,
    ) -> RResult<Produced, FfiError>,
    /// Runs the function's `close` and frees the instance; the handle is dead afterwards.
    #[sabi(last_prefix_field)]
    pub close: unsafe extern "C" fn(instance: InstanceHandle, ctx: &FfiContext) -> RResult<(), FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "pfn_plugin";
    const NAME: &'static str = "pfn_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Builds the root module for `F`; called once per load by the exported library header.
#[doc(hidden)]
pub fn module_for<F: Function>(name: &'static str, version: &'static str, panic_unwind: bool) -> PluginModuleRef {
    PluginModule {
        abi_version: RStr::from_str(ABI_VERSION),
        name: RStr::from_str(name),
        version: RStr::from_str(version),
        panic_unwind,
        new_instance: entry::new_instance::<F>,
        process: entry::process::<F>,
        close: entry::close::<F>,
    }
    .leak_into_prefix()
}

/// Exports `$function` (a type implementing [`Function`]) as this library's root module, with
/// the name and version of the Cargo package that invokes it.
///
/// Usually reached through `#[pfn_abi::function]`; call it directly for a hand-written
/// [`Function`] implementation.
#[macro_export]
macro_rules! export_function {
    ($function:ty) => {
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __PFN_ROOT_MODULE_HEADER: $crate::__private::LibHeader = {
            extern "C" fn load_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(|| {
                    $crate::__private::module_for::<$function>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                        cfg!(panic = "unwind"),
                    )
                })
            }
            // SAFETY: `load_root_module` returns a `PluginModuleRef`, the module type named here.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::PluginModuleRef>(
                    load_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_matches_abi_stable() {
        assert_eq!(crate::__private::ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
