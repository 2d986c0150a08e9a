//! A read-only memory map of a received upload, so the CSV parser (which
//! takes one byte slice) can read a file without the file being copied into
//! memory, and so the pages it has moved past can be handed back to the
//! kernel as it goes ([`MappedFile::release_before`]). An upload then costs
//! memory for its index, not for its bytes.
//!
//! Why this is sound: the mapped files are the spool files of
//! [`crate::usecases::uploads`], private to this process and never written
//! once received (blob storage may hard-link them, and never writes a blob
//! in place), so the mapping cannot shrink under the parser. Releasing a
//! page of a shared file mapping only drops it from this process: reading it
//! again reads it back from the file.

use std::path::Path;

pub struct MappedFile {
    #[cfg(unix)]
    ptr: *mut libc::c_void,
    #[cfg(not(unix))]
    data: Vec<u8>,
    len: usize,
    /// Bytes at the start already released, a multiple of the page size.
    released: std::sync::atomic::AtomicUsize,
}

// SAFETY: the mapping is read-only and owned by this value; the pointer is
// only read through `bytes` and unmapped on drop.
unsafe impl Send for MappedFile {}
unsafe impl Sync for MappedFile {}

impl MappedFile {
    #[cfg(unix)]
    pub fn open(path: &Path) -> std::io::Result<MappedFile> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
                released: Default::default(),
            });
        }
        // SAFETY: a fresh read-only shared mapping of a whole file we opened;
        // the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_SEQUENTIAL);
        }
        Ok(MappedFile {
            ptr,
            len,
            released: Default::default(),
        })
    }

    #[cfg(not(unix))]
    pub fn open(path: &Path) -> std::io::Result<MappedFile> {
        let data = std::fs::read(path)?;
        Ok(MappedFile {
            len: data.len(),
            data,
            released: Default::default(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        #[cfg(unix)]
        // SAFETY: `ptr` maps `len` readable bytes for the life of `self`.
        unsafe {
            std::slice::from_raw_parts(self.ptr as *const u8, self.len)
        }
        #[cfg(not(unix))]
        &self.data
    }

    /// Hands the pages wholly before `offset` back to the kernel: the
    /// parser has moved past them. They can still be read (from the file).
    pub fn release_before(&self, offset: u64) {
        #[cfg(unix)]
        {
            use std::sync::atomic::Ordering;
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .max(1);
            let end = (offset.min(self.len as u64) as usize) / page * page;
            let start = self.released.load(Ordering::Relaxed);
            if end <= start {
                return;
            }
            // SAFETY: [start, end) lies inside the mapping and is page-aligned;
            // MADV_DONTNEED on a shared file mapping keeps its contents.
            unsafe {
                libc::madvise(
                    (self.ptr as *mut u8).add(start) as *mut libc::c_void,
                    end - start,
                    libc::MADV_DONTNEED,
                );
            }
            self.released.store(end, Ordering::Relaxed);
        }
        #[cfg(not(unix))]
        let _ = offset;
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.len > 0 {
            // SAFETY: unmapping the mapping this value owns, once.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_still_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let map = MappedFile::open(&path).unwrap();
        assert_eq!(map.bytes(), &data[..]);
        map.release_before(200_000);
        assert_eq!(map.bytes(), &data[..]);
        std::fs::write(dir.path().join("e"), b"").unwrap();
        assert_eq!(MappedFile::open(&dir.path().join("e")).unwrap().bytes(), b"");
    }
}
