//! What a child may use, from the spec's `resources`, applied between fork and exec:
//! - `ram`: the data segment limit (`RLIMIT_DATA`, which on Linux ≥ 4.7 counts the heap and
//!   every private writable mapping), so an allocation past it fails in the child (which then
//!   aborts and is recorded as a crash) instead of growing the worker's memory;
//! - `disk`: the largest file the child may write (`RLIMIT_FSIZE`);
//! - `cpu`: the cores the child may run on (`sched_setaffinity`), `ceil(cpu)` of the worker's,
//!   chosen by instance id so that instances spread. A fraction of a core is not enforced
//!   without cgroups.

use std::io;

use crate::config::Resources;

/// A child's limits, as plain numbers that can cross into the forked child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub ram: Option<u64>,
    pub disk: Option<u64>,
    /// Cores to pin to, and which of the worker's allowed cores to start from.
    pub cores: Option<(usize, usize)>,
}

impl Limits {
    /// The limits of instance `instance_id` of a function with `resources`.
    pub fn of(resources: Option<&Resources>, instance_id: u32) -> Self {
        let Some(resources) = resources else { return Self::default() };
        let cores = resources.cpu.map(|cpu| {
            // Validated positive and finite; a count of cores fits in usize.
            let count = (cpu.ceil() as usize).max(1);
            (count, instance_id as usize * count)
        });
        Self { ram: resources.ram, disk: resources.disk, cores }
    }

    /// Applies the limits to the calling process. Runs in a forked child before exec, so it
    /// only makes system calls.
    pub fn apply(&self) -> io::Result<()> {
        if let Some(ram) = self.ram {
            set_limit(libc::RLIMIT_DATA, ram)?;
        }
        if let Some(disk) = self.disk {
            set_limit(libc::RLIMIT_FSIZE, disk)?;
        }
        if let Some((count, first)) = self.cores {
            pin_to_cores(count, first)?;
        }
        Ok(())
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `limit` is a valid rlimit; the result is checked.
    if unsafe { libc::setrlimit(resource, &raw const limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the process to `count` of the cores it may run on, from the `first`th (wrapping).
fn pin_to_cores(count: usize, first: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `allowed` is a cpu_set_t of `size` bytes; the result is checked.
    if unsafe { libc::sched_getaffinity(0, size, &raw mut allowed) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cores = [0_usize; 1024];
    let mut found = 0;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE.
        if unsafe { libc::CPU_ISSET(cpu, &allowed) } && found < cores.len() {
            cores[found] = cpu;
            found += 1;
        }
    }
    if found == 0 || count >= found {
        return Ok(());
    }
    // SAFETY: as above.
    let mut pinned: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for offset in 0..count {
        // SAFETY: every entry of `cores` below `found` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cores[(first + offset) % found], &mut pinned) };
    }
    // SAFETY: `pinned` is a cpu_set_t of `size` bytes; the result is checked.
    if unsafe { libc::sched_setaffinity(0, size, &raw const pinned) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
