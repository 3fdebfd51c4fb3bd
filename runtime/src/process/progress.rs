//! Which call of its batch a child is in, in a word of memory the worker and the child share:
//! the child writes it before each call without a system call, and the worker reads it when the
//! child dies or overruns its timeout, to know which input was running.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicU64, Ordering},
};

use memmap2::MmapMut;

/// The shared word: 0 between calls, `i + 1` while the batch's input `i` is called.
#[derive(Debug)]
pub struct Progress {
    map: MmapMut,
    file: File,
}

impl Progress {
    /// A new shared word, in an anonymous memory file the child inherits.
    pub fn create() -> io::Result<Self> {
        // SAFETY: the name is a valid NUL-terminated string; the result is checked.
        let fd = unsafe { libc::memfd_create(c"pfn-progress".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(8)?;
        Self::map(file)
    }

    /// The word behind `fd`, inherited from the worker.
    ///
    /// # Safety
    /// `fd` must be an open memory file of at least 8 bytes that nothing else in this process
    /// owns.
    pub unsafe fn inherited(fd: RawFd) -> io::Result<Self> {
        // SAFETY: per this function's contract.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Self::map(file)
    }

    fn map(file: File) -> io::Result<Self> {
        // SAFETY: the file is a private memory file shared only with the child, which writes
        // the word with atomic stores, as the worker reads it.
        let map = unsafe { MmapMut::map_mut(&file)? };
        if map.len() < 8 {
            return Err(io::Error::other("the progress file is shorter than 8 bytes"));
        }
        Ok(Self { map, file })
    }

    /// The descriptor to hand the child.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the map is page-aligned and at least 8 bytes long, so it holds an aligned
        // `u64`; it lives as long as `self`, and both processes use it only atomically.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }
    }

    /// Marks the batch's input `index` as being called.
    pub fn enter(&self, index: usize) {
        self.word().store(index as u64 + 1, Ordering::Release);
    }

    /// Marks the end of the batch's calls.
    pub fn idle(&self) {
        self.word().store(0, Ordering::Release);
    }

    /// The input being called, if any.
    pub fn current(&self) -> Option<usize> {
        let word = self.word().load(Ordering::Acquire);
        usize::try_from(word).ok().and_then(|word| word.checked_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_the_same_word() {
        let worker = Progress::create().expect("a memory file");
        // SAFETY: a duplicate of the worker's descriptor, owned by nothing else.
        let child = unsafe { Progress::inherited(libc::dup(worker.fd())) }.expect("maps");
        assert_eq!(worker.current(), None);
        child.enter(41);
        assert_eq!(worker.current(), Some(41));
        child.idle();
        assert_eq!(worker.current(), None);
    }
}
