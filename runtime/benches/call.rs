//! The per-message call: an identity function `fn(&[u8]) -> &[u8]` called through the plugin
//! FFI edge (the `bytes-slice` shape fixture) against the same function called natively.
//!
//! Both sides copy the result into a reused output buffer, as `PluginInstance::process` does
//! into its host-owned `RVec`. Needs `scripts/build-plugins.sh` to have built the fixture.
//! Goal: the FFI call within 10 ns of the native one at 64 bytes.
//!
//! Each side's payload is placed [`GAP`] bytes (mod 4096) below that side's output buffer, so
//! that both copies have the same geometry: glibc's `rep movsb` copy is 20x slower on some
//! AMD CPUs when the destination is just above the source modulo 4 KiB, and allocator luck
//! would otherwise decide the 4 KiB result.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    time::Duration,
};

use abi_stable::std_types::RStr;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pfn::{
    context::{FunctionIdentity, Services},
    instance::plain_record,
    loader::{Loader, Pin, PluginCache},
    verify::Sha256Digest,
};

/// The payload sizes measured, in bytes.
const SIZES: [usize; 2] = [64, 4096];

/// The distance, modulo 4096, from each side's payload up to its output buffer.
const GAP: usize = 2048;

/// The target directory `scripts/build-plugins.sh` built into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"), PathBuf::from)
}

/// The native identity function.
#[inline(never)]
fn identity(input: &[u8]) -> &[u8] {
    input
}

/// A buffer holding one payload at a chosen address modulo 4096.
struct Placed {
    backing: Vec<u8>,
    start: usize,
    len: usize,
}

impl Placed {
    /// A copy of `payload` that starts [`GAP`] bytes (mod 4096) below `output`.
    fn below(payload: &[u8], output: *const u8) -> Self {
        let mut backing = vec![0; payload.len() + 4096];
        let base = backing.as_ptr() as usize;
        let start = (output as usize).wrapping_sub(GAP).wrapping_sub(base) % 4096;
        backing[start..start + payload.len()].copy_from_slice(payload);
        Self { backing, start, len: payload.len() }
    }

    fn bytes(&self) -> &[u8] {
        &self.backing[self.start..self.start + self.len]
    }
}

fn call(c: &mut Criterion) {
    let target = target_dir();
    let library = target.join("fixtures").join("shapes").join("bytes-slice.so");
    let bytes = std::fs::read(&library)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run scripts/build-plugins.sh first", library.display()));
    let loader = Loader::new(PluginCache::new(target.join("bench").join("plugin-cache")));
    let plugin = loader.load(&library, Pin::Digest(Sha256Digest::of(&bytes))).expect("the fixture loads");
    let mut instance =
        plugin.instantiate(FunctionIdentity::default(), Services::default()).expect("the fixture instantiates");

    let mut group = c.benchmark_group("identity");
    for size in SIZES {
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));

        let mut out: Vec<u8> = Vec::with_capacity(size);
        let native_payload = Placed::below(&payload, out.as_ptr());
        group.bench_with_input(BenchmarkId::new("native", size), native_payload.bytes(), |b, payload| {
            b.iter(|| {
                let result = identity(black_box(payload));
                out.clear();
                out.extend_from_slice(result);
                black_box(out.as_slice());
            });
        });

        // A first call sizes the instance's output buffer, whose address then stays put.
        let warm = plain_record(&payload, RStr::from_str("bench"), "1");
        let output = instance.process(&warm).0.expect("the identity call succeeds").map(<[u8]>::as_ptr);
        let ffi_payload = Placed::below(&payload, output.expect("the identity returns its input"));
        let record = plain_record(ffi_payload.bytes(), RStr::from_str("bench"), "1");
        assert_eq!(
            instance.process(&record).0.expect("the identity call succeeds"),
            Some(payload.as_slice()),
            "the fixture is not the identity"
        );
        group.bench_with_input(BenchmarkId::new("ffi", size), &record, |b, record| {
            b.iter(|| {
                let result = instance.process(black_box(record)).0.expect("the identity call succeeds");
                black_box(result);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = call
}
criterion_main!(benches);
