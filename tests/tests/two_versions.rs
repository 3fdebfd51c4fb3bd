//! Two versions of one plugin loaded at once in one process, each answering as itself; and a
//! plugin built against an older minor of the plugin interface, loaded by this host.

use abi_stable::std_types::RStr;
use pfn::{
    context::{FunctionIdentity, Services},
    instance::plain_record,
    loader::Pin,
};
use pfn_tests::fixtures::{loader_in, scratch, sha256_of, versioned, versioned_on_abi_1_0};

#[test]
fn two_versions_answer_side_by_side() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let load = |version: &str| {
        let path = versioned(version);
        loader.load(&path, Pin::Digest(sha256_of(&path))).expect("versioned fixture loads")
    };
    let (old, new) = (load("1.0.0"), load("1.2.0"));
    assert_eq!((old.info.name.as_str(), new.info.name.as_str()), ("versioned", "versioned"));
    assert_eq!((old.version.to_string(), new.version.to_string()), ("1.0.0".into(), "1.2.0".into()));
    assert_ne!(old.info.opened_path, new.info.opened_path, "each version opens from its own copy");

    let mut old_instance = old.instantiate(FunctionIdentity::default(), Services::default()).expect("v1.0.0 init");
    let mut new_instance = new.instantiate(FunctionIdentity::default(), Services::default()).expect("v1.2.0 init");
    for n in 0..1000 {
        let payload = format!("m{n}");
        let record = plain_record(payload.as_bytes(), RStr::from_str("t"), "id");
        let from_old = old_instance.process(&record).0.expect("v1.0.0 call").map(<[u8]>::to_vec);
        let from_new = new_instance.process(&record).0.expect("v1.2.0 call").map(<[u8]>::to_vec);
        assert_eq!(from_old, Some(format!("m{n} from v1.0.0 on 0").into_bytes()));
        assert_eq!(from_new, Some(format!("m{n} from v1.2.0 on 0").into_bytes()));
    }
}

#[test]
fn a_plugin_built_against_interface_1_0_loads_and_runs_on_this_host() {
    let dir = scratch();
    let path = versioned_on_abi_1_0();
    let plugin = loader_in(dir.path()).load(&path, Pin::Digest(sha256_of(&path))).expect("the 1.0 plugin loads");
    assert_eq!(plugin.info.abi_version, "1.0.0", "the fixture is built against interface 1.0");
    assert_ne!(pfn_abi::ABI_VERSION, "1.0.0", "the host's interface has moved on since");
    let identity = FunctionIdentity { instance_id: 3, ..FunctionIdentity::default() };
    let mut instance = plugin.instantiate(identity, Services::default()).expect("init through the 1.0 context");
    for n in 0..100 {
        let payload = format!("m{n}");
        let record = plain_record(payload.as_bytes(), RStr::from_str("t"), "id");
        let output = instance.process(&record).0.expect("a call through the 1.0 context").map(<[u8]>::to_vec);
        assert_eq!(output, Some(format!("m{n} from v1.0.0 on 3").into_bytes()));
    }
}
