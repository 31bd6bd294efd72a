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
