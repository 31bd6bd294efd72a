//! Where a path that comes from data may point: a `file_name` of an annotation file names a
//! file *inside* its images folder, never anything else. One rule for every reader and writer
//! of such names (`convert` reading images, `presize` reading and writing them).

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why a name from data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("file_name is empty")]
    Empty,
    #[error("file_name is absolute or contains '..': refusing to leave the images folder")]
    Escapes,
    #[error("file_name leads outside the images folder through a symbolic link: refused")]
    LinkEscapes,
}

/// Why a name from data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenFailed {
    #[error(transparent)]
    Refused(#[from] PathRefused),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A folder that names from data are confined to, with its real location resolved once.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// `dir` with every symbolic link resolved (`dir` itself when it cannot be resolved: then
    /// nothing below it exists either).
    real: PathBuf,
    /// `dir` opened once, for [`Root::open`]'s one-call confined open; `None` when it cannot be
    /// opened (then nothing below it can be either, and the path rule answers).
    #[cfg(target_os = "linux")]
    beneath: Option<Arc<beneath::Dir>>,
}

impl Root {
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            real: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
            #[cfg(target_os = "linux")]
            beneath: beneath::Dir::new(dir).map(Arc::new),
        }
    }

    /// Open the file `name` names inside the root for reading, under the same rule as
    /// [`Root::resolve`]. Why not `resolve` + open: `resolve` follows every component of the
    /// path with a system call each (`realpath`), once per image; here the kernel applies the
    /// rule in the open itself (`openat2` with `RESOLVE_BENEATH`), which also leaves no gap
    /// between the check and the open. Names it refuses — a symbolic link on the way that
    /// points outside, or any absolute link, even one back inside — and kernels without
    /// `openat2` take the path rule, so the answer is the same either way.
    ///
    /// Opened non-blocking: a FIFO must not stall the run before the caller sees it is not a
    /// regular file (reads of regular files ignore the flag).
    pub fn open(&self, name: &str) -> Result<File, OpenFailed> {
        join_inside(&self.dir, name)?;
        #[cfg(target_os = "linux")]
        if let Some(dir) = &self.beneath {
            if let Some(opened) = dir.open_file(name) {
                return opened.map_err(OpenFailed::Io);
            }
        }
        let path = self.resolve(name)?;
        open_nonblocking(&path).map_err(OpenFailed::Io)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Size of the regular file `name` names inside the root (the same rule as
    /// [`Root::open`]); `None` when it is refused, missing or not a regular file. For planning
    /// (shards by bytes), on every image before the run: one `statx` for a plain name in the
    /// folder itself, an `O_PATH` open (no side effects, even on a FIFO) and `fstat` for
    /// names through subfolders or links, the path rule where the kernel cannot decide.
    pub fn file_size(&self, name: &str) -> Option<u64> {
        join_inside(&self.dir, name).ok()?;
        #[cfg(target_os = "linux")]
        if let Some(dir) = &self.beneath {
            if let Some(size) = dir.file_size(name) {
                return size;
            }
        }
        let meta = std::fs::metadata(self.resolve(name).ok()?).ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// The file `name` names inside the root: refused when it escapes lexically
    /// ([`join_inside`]) or when, with its symbolic links followed, it lies outside the root's
    /// real location. A name that does not exist is returned as joined (reading it reports
    /// "not found").
    pub fn resolve(&self, name: &str) -> Result<PathBuf, PathRefused> {
        let path = join_inside(&self.dir, name)?;
        match std::fs::canonicalize(&path) {
            Ok(real) if !real.starts_with(&self.real) => Err(PathRefused::LinkEscapes),
            _ => Ok(path),
        }
    }
}

/// Open `path` read-only and non-blocking (see [`Root::open`]).
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)
}

/// The confined open: `openat2(dir, name, RESOLVE_BENEATH)`.
#[cfg(target_os = "linux")]
mod beneath {
    use rustix::fs::{openat2, statat, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
    use rustix::io::Errno;
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug)]
    pub struct Dir {
        fd: OwnedFd,
        /// Cleared the first time the kernel says it has no `openat2` (older than 5.6, or a
        /// sandbox filtering it): from then on every name takes the path rule directly.
        works: AtomicBool,
    }

    impl Dir {
        pub fn new(dir: &Path) -> Option<Dir> {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(dir, flags, Mode::empty()).ok()?;
            Some(Dir {
                fd,
                works: AtomicBool::new(true),
            })
        }

        /// [`Root::file_size`]: `Some` when the kernel decided (see [`Dir::open_file`]).
        pub fn file_size(&self, name: &str) -> Option<Option<u64>> {
            let regular = |st: &Stat| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
            if !name.contains('/') {
                // No folder on the way and the last component not followed: confined as is.
                match statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {}
                    Ok(st) => return Some(regular(&st).then_some(st.st_size as u64)),
                    Err(_) => return Some(None),
                }
            }
            let st = match self.confined(name, OFlags::PATH | OFlags::CLOEXEC)? {
                Ok(fd) => rustix::fs::fstat(&fd).ok(),
                Err(_) => None,
            };
            Some(st.filter(regular).map(|st| st.st_size as u64))
        }

        /// `Some` with the answer when the kernel decided; `None` when the path rule must:
        /// the name leaves the folder through a link (`EXDEV`; the rule tells an absolute
        /// link back inside from a real escape), a magic link or loop (`ELOOP`), a retry asked
        /// for (`EAGAIN`), or no `openat2` here (`ENOSYS`, or `EPERM` from a sandbox: from
        /// then on the path rule answers every name, same answers, only slower).
        pub fn open_file(&self, name: &str) -> Option<std::io::Result<File>> {
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
            Some(self.confined(name, flags)?.map(File::from))
        }

        /// `openat2(dir, name, flags, RESOLVE_BENEATH)`, `None` where the path rule decides.
        fn confined(&self, name: &str, flags: OFlags) -> Option<std::io::Result<OwnedFd>> {
            if !self.works.load(Ordering::Relaxed) {
                return None;
            }
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match openat2(&self.fd, name, flags, Mode::empty(), resolve) {
                Ok(fd) => Some(Ok(fd)),
                // EAGAIN: the kernel saw a rename race on a ".." it follows and asks for a
                // retry; the path rule answers instead.
                Err(Errno::XDEV | Errno::LOOP | Errno::AGAIN) => None,
                Err(Errno::NOSYS | Errno::PERM) => {
                    self.works.store(false, Ordering::Relaxed);
                    None
                }
                Err(e) => Some(Err(e.into())),
            }
        }
    }
}

/// `root` joined with the relative name `name`, refused when `name` is empty, absolute, or has
/// any `..`, `.` or prefix component (so the result is lexically inside `root`).
pub fn join_inside(root: &Path, name: &str) -> Result<PathBuf, PathRefused> {
    if name.is_empty() {
        return Err(PathRefused::Empty);
    }
    let rel = Path::new(name);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(PathRefused::Escapes);
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An images folder `imgs` beside a `secret` folder, with every kind of link the rule
    /// decides: absolute and relative links out (`link.jpg`, `rel_out.jpg`), a linked folder
    /// out (`dir`), absolute and relative links back inside (`inner.jpg`, `rel_in.jpg`).
    fn linked_folder() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("imgs"), d.path().join("secret"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("key.jpg"), b"k").unwrap();
        std::fs::write(root.join("sub/a.jpg"), b"a").unwrap();
        let link = |to: &Path, at: &str| std::os::unix::fs::symlink(to, root.join(at)).unwrap();
        link(&outside.join("key.jpg"), "link.jpg");
        link(Path::new("../secret/key.jpg"), "rel_out.jpg");
        link(&outside, "dir");
        link(&root.join("sub/a.jpg"), "inner.jpg");
        link(Path::new("sub/a.jpg"), "rel_in.jpg");
        (d, root)
    }

    #[test]
    fn links_leaving_the_root_are_refused() {
        let (_d, root) = linked_folder();
        let r = Root::new(&root);
        assert_eq!(r.resolve("sub/a.jpg"), Ok(root.join("sub/a.jpg")));
        assert_eq!(r.resolve("inner.jpg"), Ok(root.join("inner.jpg")));
        assert_eq!(r.resolve("missing.jpg"), Ok(root.join("missing.jpg")));
        assert_eq!(r.resolve("link.jpg"), Err(PathRefused::LinkEscapes));
        assert_eq!(r.resolve("dir/key.jpg"), Err(PathRefused::LinkEscapes));
        assert_eq!(r.resolve("../secret/key.jpg"), Err(PathRefused::Escapes));
    }

    /// `open` answers as `resolve` does, for every kind of name `resolve` is tested on, and
    /// opens what `resolve` lets through.
    #[test]
    fn open_follows_the_same_rule_as_resolve() {
        let (_d, root) = linked_folder();
        // The kernel's rule (openat2) and the path rule it falls back to must agree.
        let kernel = Root::new(&root);
        assert!(kernel.beneath.is_some(), "openat2 dir handle");
        let path_rule = Root {
            beneath: None,
            ..kernel.clone()
        };
        for r in [&kernel, &path_rule] {
            check_open_rule(r);
        }
    }

    fn check_open_rule(r: &Root) {
        let read = |name: &str| {
            r.open(name).map(|f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut &f, &mut s).unwrap();
                s
            })
        };
        for name in ["sub/a.jpg", "inner.jpg", "rel_in.jpg"] {
            assert_eq!(read(name).unwrap(), "a", "{name}");
        }
        for name in ["link.jpg", "rel_out.jpg", "dir/key.jpg"] {
            assert!(
                matches!(
                    read(name),
                    Err(OpenFailed::Refused(PathRefused::LinkEscapes))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            read("../secret/key.jpg"),
            Err(OpenFailed::Refused(PathRefused::Escapes))
        ));
        // file_size follows the same rule.
        for name in ["sub/a.jpg", "inner.jpg", "rel_in.jpg"] {
            assert_eq!(r.file_size(name), Some(1), "{name}");
        }
        for name in [
            "link.jpg",
            "rel_out.jpg",
            "dir/key.jpg",
            "../secret/key.jpg",
            "sub",
        ] {
            assert_eq!(r.file_size(name), None, "{name}");
        }
        match read("missing.jpg") {
            Err(OpenFailed::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("missing.jpg: {other:?}"),
        }
    }

    #[test]
    fn names_escaping_the_root_are_refused() {
        let d = Path::new("/out");
        assert_eq!(join_inside(d, "a/b.jpg"), Ok(PathBuf::from("/out/a/b.jpg")));
        assert_eq!(join_inside(d, "../x.jpg"), Err(PathRefused::Escapes));
        assert_eq!(join_inside(d, "/etc/passwd"), Err(PathRefused::Escapes));
        assert_eq!(join_inside(d, "a/../../x"), Err(PathRefused::Escapes));
        assert_eq!(join_inside(d, "./x"), Err(PathRefused::Escapes));
        assert_eq!(join_inside(d, ""), Err(PathRefused::Empty));
    }
}
