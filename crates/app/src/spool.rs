//! A received upload's spool file as the CSV parser reads it: in chunks, at
//! any offset, from any of the parser's threads ([`SpoolSource`]). No chunk
//! is kept once parsed, so an upload costs memory for its index and for the
//! few chunks being parsed, not for its bytes.
//!
//! The spool files of [`crate::usecases::uploads`] are private to this
//! process and never written once received (blob storage may hard-link
//! them, and never writes a blob in place), so what is read cannot change
//! under the parser.

use std::fs::File;
use std::path::Path;

use callmeta_core::csv::Source;

pub struct SpoolSource {
    file: File,
    len: u64,
    #[cfg(not(any(unix, windows)))]
    position: std::sync::Mutex<()>,
}

impl SpoolSource {
    pub fn open(path: &Path) -> std::io::Result<SpoolSource> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SpoolSource {
            file,
            len,
            #[cfg(not(any(unix, windows)))]
            position: std::sync::Mutex::new(()),
        })
    }
}

impl Source for SpoolSource {
    fn len(&self) -> u64 {
        self.len
    }

    #[cfg(unix)]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }

    #[cfg(windows)]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset)
    }

    #[cfg(not(any(unix, windows)))]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let _held = self.position.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))?;
        file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_range_and_ends_with_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let source = SpoolSource::open(&path).unwrap();
        assert_eq!(source.len(), data.len() as u64);
        let mut buf = vec![0; 1000];
        assert_eq!(source.read_at(200_000, &mut buf).unwrap(), 1000);
        assert_eq!(buf, &data[200_000..201_000]);
        assert_eq!(source.read_at(299_500, &mut buf).unwrap(), 500);
        assert_eq!(&buf[..500], &data[299_500..]);
        assert_eq!(source.read_at(300_000, &mut buf).unwrap(), 0);
    }
}
