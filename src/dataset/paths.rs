//! Where a path that comes from data may point: a `file_name` of an annotation file names a
//! file *inside* its images folder, never anything else. One rule for every reader and writer
//! of such names (`convert` reading images, `presize` reading and writing them).

use std::path::{Component, Path, PathBuf};

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

/// A folder that names from data are confined to, with its real location resolved once.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// `dir` with every symbolic link resolved (`dir` itself when it cannot be resolved: then
    /// nothing below it exists either).
    real: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            real: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    #[test]
    fn links_leaving_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("imgs"), d.path().join("secret"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("key.jpg"), b"k").unwrap();
        std::fs::write(root.join("sub/a.jpg"), b"a").unwrap();
        std::os::unix::fs::symlink(outside.join("key.jpg"), root.join("link.jpg")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dir")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.jpg"), root.join("inner.jpg")).unwrap();
        let r = Root::new(&root);
        assert_eq!(r.resolve("sub/a.jpg"), Ok(root.join("sub/a.jpg")));
        assert_eq!(r.resolve("inner.jpg"), Ok(root.join("inner.jpg")));
        assert_eq!(r.resolve("missing.jpg"), Ok(root.join("missing.jpg")));
        assert_eq!(r.resolve("link.jpg"), Err(PathRefused::LinkEscapes));
        assert_eq!(r.resolve("dir/key.jpg"), Err(PathRefused::LinkEscapes));
        assert_eq!(r.resolve("../secret/key.jpg"), Err(PathRefused::Escapes));
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
