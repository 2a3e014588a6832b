//! The committed inputs of the fuzz targets, for the crates' tests: `fuzz/seeds/<target>/`
//! (a small seed corpus) and `fuzz/regressions/<target>/` (every crash the fuzzers found;
//! those not fixed yet wait in its `open/` folder, which [`open`] reads).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The `fuzz` folder: found above the including crate's manifest folder.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("fuzz"))
        .find(|dir| dir.join("seeds").is_dir())
        .expect("the fuzz folder with its seeds is above the crate")
}

/// The files directly in `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The seeds and the fixed regressions of `target`.
pub fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir();
    let mut all = files(&dir.join("seeds").join(target));
    all.extend(files(&dir.join("regressions").join(target)));
    all
}

/// The crashes of `target` found and not fixed yet.
#[allow(dead_code, reason = "only the crates with open findings replay them")]
pub fn open(target: &str) -> Vec<PathBuf> {
    files(&fuzz_dir().join("regressions").join(target).join("open"))
}

/// Run `check` on every file of `paths`; panics naming each file on which it panicked.
pub fn replay(paths: &[PathBuf], check: impl Fn(&[u8])) {
    let failed: Vec<String> = paths
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable input");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}
