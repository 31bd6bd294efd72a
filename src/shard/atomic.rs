//! Files that appear whole or not at all: written as `<name>.partial`, renamed into place when
//! complete. A reader, a crashed process or Ctrl-C never sees half a file under its final name.
//! With `durable`, the file is fsynced before and its folder after the rename, so it also
//! survives a power loss (see the sinks in [`super::writer`] for why that is not the default).
//!
//! Every whole-file write of dsprep goes through here: manifests, label maps, presized images,
//! rewritten annotation files, rebuilt indexes. Shard sinks keep their own two-file protocol
//! (index renamed before its shard) but name their partials with [`partial_path`] too.

use super::format::partial_path;
use super::ShardError;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file being written under its partial name. [`AtomicFile::commit`] renames it into place;
/// dropping it uncommitted removes the partial file.
pub struct AtomicFile {
    path: PathBuf,
    partial: PathBuf,
    /// `None` once committed.
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts `path` (its folder must exist); a stale partial file of a crashed run is replaced.
    pub fn create(path: &Path) -> Result<AtomicFile, ShardError> {
        let partial = partial_path(path);
        let file = create_fresh(&partial)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            partial,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Where the bytes go until the commit (for error messages).
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Flushes, (with `durable`) fsyncs, renames into place, and (with `durable`) fsyncs the
    /// folder.
    pub fn commit(mut self, durable: bool) -> Result<(), ShardError> {
        let Some(w) = self.writer.take() else {
            return Err(ShardError::Io {
                path: self.partial.clone(),
                source: io::Error::other("already committed"),
            });
        };
        let result = (|| {
            let file = w.into_inner().map_err(|e| ShardError::Io {
                path: self.partial.clone(),
                source: e.into_error(),
            })?;
            if durable {
                file.sync_all().map_err(io_err(&self.partial))?;
            }
            drop(file);
            std::fs::rename(&self.partial, &self.path).map_err(io_err(&self.path))?;
            if durable {
                if let Some(parent) = self.path.parent() {
                    sync_dir(parent)?;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.partial);
        }
        result
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.writer.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            // Discard what is buffered: the file is about to be removed.
            let (file, _) = w.into_parts();
            drop(file);
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Creates `path` as a new, empty file: whatever was there under that name (a stale partial of
/// a crashed run, or a symbolic link someone left) is removed first — as a link, never
/// followed — and the file is created exclusively, so no write of dsprep ever goes through a
/// link to somewhere else.
pub fn create_fresh(path: &Path) -> Result<File, ShardError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io_err(path))?,
        Ok(_) => std::fs::remove_file(path).map_err(io_err(path))?,
        Err(_) => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), ShardError> {
    let mut f = AtomicFile::create(path)?;
    let partial = f.partial().to_path_buf();
    f.write_all(bytes).map_err(io_err(&partial))?;
    f.commit(durable)
}

/// fsyncs a folder so renames inside it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<(), ShardError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"{}", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        write_atomic(&p, b"[1]", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[1]");
        assert!(!dir.path().join("m.json.partial").exists());
    }

    #[test]
    fn uncommitted_file_leaves_nothing_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"new, half").unwrap();
        assert!(dir.path().join("a.txt.partial").exists());
        drop(f);
        assert!(!dir.path().join("a.txt.partial").exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn a_link_under_the_partial_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("m.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("m.json.partial")).unwrap();
        write_atomic(&p, b"{}", false).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(&dir.path().join("no/such/x"), b"1", false).unwrap_err();
        assert!(e.to_string().contains("x.partial"), "{e}");
        // The final name is a folder: the rename fails, naming it, and no partial is left.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/inner"), b"").unwrap();
        let e = write_atomic(&dir.path().join("d"), b"1", false).unwrap_err();
        assert!(e.to_string().contains('d'), "{e}");
        assert!(!dir.path().join("d.partial").exists());
    }
}
