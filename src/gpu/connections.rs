//! How many hardware work queues CUDA gives a context: `CUDA_DEVICE_MAX_CONNECTIONS`, read by
//! the driver once, when the context is created (8 when unset, 32 at most).
//!
//! Why the pipeline cares: streams beyond the queue count share queues, and a queue runs its
//! work in order, so one stream's wait holds up the others behind it. With the default 8, the
//! loader's streams (one per decoder thread, the kernel stream, nvJPEG's own) and a training
//! loop's share queues, and on an H200 the hardware decoder's wait and the CUDA decoders'
//! transfers ended up waiting on each other: the GPU sat idle with every decoder waiting
//! (measured 2026-12-02: every training run with the hardware decoder stalled within 20 s at
//! 8 queues, none of three at 32; `bench/loader/results-2026-12-02b/diagnosis.md`). So the GPU
//! pipeline wants every context of its process to get the maximum: the CLI sets it before any
//! CUDA call when it is unset (a value you export is used as it is: `verify-throughput` has no
//! training loop beside it, and ran without a stall at 8 in every measured run), the Python
//! package at import, and a loader whose process has fewer refuses the GPU and says how to
//! fix it.

/// The variable's name.
pub const ENV: &str = "CUDA_DEVICE_MAX_CONNECTIONS";
/// The value the pipeline needs (CUDA's maximum).
pub const NEEDED: u32 = 32;

/// What is wrong with `value` (the variable as the process has it; `None`: unset) for the GPU
/// pipeline, or `None` when it is enough.
pub fn problem(value: Option<&str>) -> Option<String> {
    let fix = format!(
        "set {ENV}={NEEDED} in the environment before the process starts, or import dsprep \
         before anything initialises CUDA (the package sets it then)"
    );
    match value.map(str::trim) {
        None => Some(format!(
            "{ENV} is unset, so CUDA contexts get 8 hardware queues and the GPU pipeline's \
             streams can deadlock with a training loop's: {fix}"
        )),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n == NEEDED => None,
            Ok(n) if n > NEEDED => Some(format!(
                "{ENV}={n} is outside CUDA's documented range (1 to {NEEDED}): {fix}"
            )),
            Ok(n) => Some(format!(
                "{ENV}={n} gives CUDA contexts {n} hardware queues; the GPU pipeline needs \
                 {NEEDED} (with fewer its streams can deadlock with a training loop's): {fix}"
            )),
            Err(_) => Some(format!("{ENV}={v:?} is not a number: {fix}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_maximum_is_enough() {
        assert_eq!(problem(Some("32")), None);
        assert_eq!(problem(Some(" 32 ")), None);
        let unset = problem(None).unwrap();
        assert!(
            unset.starts_with("CUDA_DEVICE_MAX_CONNECTIONS is unset"),
            "{unset}"
        );
        assert!(
            unset.contains("set CUDA_DEVICE_MAX_CONNECTIONS=32"),
            "{unset}"
        );
        let few = problem(Some("8")).unwrap();
        assert!(
            few.starts_with("CUDA_DEVICE_MAX_CONNECTIONS=8 gives"),
            "{few}"
        );
        assert!(problem(Some("1")).is_some());
        assert!(problem(Some("thirty")).unwrap().contains("not a number"));
        assert!(problem(Some("")).unwrap().contains("not a number"));
        assert_eq!(problem(Some("+32")), None); // what CUDA's own parse takes too
        assert!(problem(Some("64"))
            .unwrap()
            .contains("outside CUDA's documented range"));
    }
}
