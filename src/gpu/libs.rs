//! Where the CUDA libraries are looked for. Kept free of `unsafe`: it only builds candidate paths;
//! [`crate::gpu::ffi`] opens them.
//!
//! Order (first hit wins): `LD_LIBRARY_PATH`, `CUDA_HOME`/`CUDA_PATH` `lib64`, the toolkit's
//! `/usr/local/cuda/lib64`, the driver's `/usr/local/nvidia/lib64`, then the `nvidia/cu13/lib`
//! (and CUDA 12's per-library `nvidia/<lib>/lib`) folders of the pip wheels installed for the
//! `python3` on PATH. The pip wheels are how a machine without the toolkit gets nvJPEG and NVRTC
//! (`pip install nvidia-nvjpeg nvidia-cuda-nvrtc`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Directories searched for CUDA libraries, in priority order, de-duplicated.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            let base = PathBuf::from(v);
            dirs.push(base.join("lib64"));
            dirs.push(base.join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.push(PathBuf::from("/usr/local/cuda/targets/x86_64-linux/lib"));
    dirs.push(PathBuf::from("/usr/local/nvidia/lib64"));
    for sp in python_site_packages() {
        dirs.push(sp.join("nvidia/cu13/lib"));
        dirs.push(sp.join("nvidia/nvjpeg/lib"));
        dirs.push(sp.join("nvidia/cuda_nvrtc/lib"));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// File names tried for library `stem` (e.g. "nvjpeg"): the CUDA 13 soname first, then 12, then
/// the unversioned development link.
pub fn file_names(stem: &str) -> Vec<String> {
    vec![
        format!("lib{stem}.so.13"),
        format!("lib{stem}.so.12"),
        format!("lib{stem}.so"),
    ]
}

/// First existing file for `stem` in [`search_dirs`].
pub fn find_in_dirs(stem: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let names = file_names(stem);
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// The site-packages folders of the `python3` on PATH (asked once; empty if there is none).
/// Why ask Python: the wheels land in a folder that depends on the interpreter, the venv and
/// `--user`, and only the interpreter knows it.
pub fn python_site_packages() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]: print(p)",
            ])
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| PathBuf::from(l.trim()))
                .filter(|p| Path::new(p).is_dir())
                .collect(),
            _ => Vec::new(),
        }
    })
}

/// How to get a missing library, for error messages.
pub fn install_hint(stem: &str) -> &'static str {
    match stem {
        "nvjpeg" => "install the CUDA toolkit (libnvjpeg) or `pip install nvidia-nvjpeg`, or point LD_LIBRARY_PATH / CUDA_HOME at it",
        "nvrtc" => "install the CUDA toolkit (libnvrtc) or `pip install nvidia-cuda-nvrtc`, or point LD_LIBRARY_PATH / CUDA_HOME at it",
        "cuda" => "install the NVIDIA driver (libcuda.so.1 comes with it)",
        _ => "install the CUDA toolkit or point LD_LIBRARY_PATH at the library",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefer_cuda13() {
        assert_eq!(file_names("nvjpeg")[0], "libnvjpeg.so.13");
        assert_eq!(file_names("nvrtc")[2], "libnvrtc.so");
    }

    #[test]
    fn finds_a_file_in_the_given_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_in_dirs("nvjpeg", &[dir.path().to_path_buf()]).is_none());
        std::fs::write(dir.path().join("libnvjpeg.so.12"), b"").unwrap();
        let got = find_in_dirs("nvjpeg", &[dir.path().to_path_buf()]).unwrap();
        assert!(got.ends_with("libnvjpeg.so.12"));
        std::fs::write(dir.path().join("libnvjpeg.so.13"), b"").unwrap();
        let got = find_in_dirs("nvjpeg", &[dir.path().to_path_buf()]).unwrap();
        assert!(got.ends_with("libnvjpeg.so.13"));
    }

    #[test]
    fn search_dirs_include_toolkit_and_are_unique() {
        let d = search_dirs();
        assert!(d.contains(&PathBuf::from("/usr/local/cuda/lib64")));
        let set: std::collections::HashSet<_> = d.iter().collect();
        assert_eq!(set.len(), d.len());
    }
}
