//! A structural check of an ELF shared library, made before it is opened.
//!
//! `dlopen` maps a library's segments straight from the file; a segment that runs past the end
//! of a truncated file is mapped anyway, and the first touch of it kills the process with
//! SIGBUS. So a file is checked to hold every segment and table its header declares.

const HEADER_LEN: usize = 64;
const PT_LOAD: u32 = 1;
const ET_DYN: u16 = 3;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `[offset, offset + len)` lies within a file of `file_len` bytes.
fn within(offset: u64, len: u64, file_len: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= file_len as u64)
}

/// Checks that `bytes` is a complete 64-bit little-endian ELF shared object.
pub fn check_complete(bytes: &[u8]) -> Result<(), String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!("truncated: {} bytes is shorter than an ELF header", bytes.len()));
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file, the only kind this host loads".into());
    }
    let header = |at| u16_at(bytes, at).map(u64::from);
    let (Some(kind), Some(ph_offset), Some(sh_offset)) = (u16_at(bytes, 16), u64_at(bytes, 32), u64_at(bytes, 40))
    else {
        return Err("unreadable ELF header".into());
    };
    if kind != ET_DYN {
        return Err(format!("ELF type {kind} is not a shared object"));
    }
    let (Some(ph_size), Some(ph_count), Some(sh_size), Some(sh_count)) =
        (header(54), header(56), header(58), header(60))
    else {
        return Err("unreadable ELF header".into());
    };
    if !within(ph_offset, ph_size * ph_count, bytes.len()) {
        return Err(format!("truncated: program headers end past the file's {} bytes", bytes.len()));
    }
    for index in 0..ph_count {
        let at = usize::try_from(ph_offset + index * ph_size).map_err(|e| e.to_string())?;
        let (Some(kind), Some(offset), Some(file_size)) =
            (u32_at(bytes, at), u64_at(bytes, at + 8), u64_at(bytes, at + 32))
        else {
            return Err("unreadable program header".into());
        };
        if kind == PT_LOAD && !within(offset, file_size, bytes.len()) {
            return Err(format!(
                "truncated: segment {index} needs bytes up to {}, the file has {}",
                offset + file_size,
                bytes.len()
            ));
        }
    }
    if sh_offset != 0 && !within(sh_offset, sh_size * sh_count, bytes.len()) {
        return Err(format!("truncated: section headers end past the file's {} bytes", bytes.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_complete;

    #[test]
    fn refuses_what_is_not_elf() {
        assert_eq!(check_complete(b"hello"), Err("not an ELF file".into()));
    }

    #[test]
    fn accepts_this_test_binary_and_refuses_its_truncation() {
        let exe = std::env::current_exe().expect("test binary path");
        let bytes = std::fs::read(exe).expect("test binary readable");
        // The test binary is an executable (PIE: ET_DYN) or not; only the truncation is asserted.
        let whole = check_complete(&bytes);
        if whole.is_ok() {
            let truncated = check_complete(&bytes[..bytes.len() / 2]);
            assert!(truncated.is_err_and(|e| e.starts_with("truncated")));
        }
        assert!(check_complete(&bytes[..40]).is_err_and(|e| e.starts_with("truncated")));
    }
}
