//! The CPU backend's memory check before a model loads (`Backend::reserve`): what the model
//! needs against what the machine has, from `/proc/meminfo` (no check where there is none).
//!
//! How it counts: the KV caches, scratch buffers and logits are anonymous memory and must fit
//! `MemAvailable` (free memory plus what the kernel can reclaim, which includes file pages
//! already cached — this model's own too). The weights are mapped from the file: page cache,
//! evictable, so they do not have to fit `MemAvailable`, but the weights and the rest together
//! must fit `MemTotal`, or every token would read the model from disk again.

use crate::backend::BackendError;

fn gb(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GB", b as f64 / 1e9)
    } else {
        format!("{:.0} MB", b as f64 / 1e6)
    }
}

fn kb(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// Refuses `weights` (mapped) + `other` (allocated) bytes that cannot fit `meminfo`.
pub fn check(weights: u64, other: u64, meminfo: &str) -> Result<(), BackendError> {
    let (Some(available), Some(total)) = (kb(meminfo, "MemAvailable"), kb(meminfo, "MemTotal"))
    else {
        return Ok(());
    };
    let advice = "use a smaller --ctx-size (-c), fewer --parallel sequences, a smaller \
                  --batch-size, or a smaller model or quantization";
    if other > available {
        return Err(BackendError::InsufficientMemory(format!(
            "cpu: not enough memory: the KV caches, scratch and logits need {} and {} is \
             available (MemAvailable), with the {} of weights mapped from the file on top; {advice}",
            gb(other),
            gb(available),
            gb(weights)
        )));
    }
    if weights.saturating_add(other) > total {
        return Err(BackendError::InsufficientMemory(format!(
            "cpu: the weights ({}, mapped from the file) and the KV caches, scratch and logits \
             ({}) need more than this machine's {} of memory (MemTotal); {advice}",
            gb(weights),
            gb(other),
            gb(total)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684092 kB\nMemFree:         1000000 kB\n\
                           MemAvailable:   20000000 kB\nBuffers:          100 kB\n";

    #[test]
    fn what_fits_and_what_does_not() {
        // 250 MB of weights and 1 GB of caches: fine
        check(250_000_000, 1_000_000_000, MEMINFO).unwrap();
        // caches beyond MemAvailable (20 480 000 000 bytes)
        let e = check(250_000_000, 21_000_000_000, MEMINFO)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("need 21.0 GB") && e.contains("20.5 GB is available"),
            "{e}"
        );
        assert!(e.contains("--ctx-size"), "{e}");
        // caches fit, but not with the weights in the machine's 25.3 GB
        let e = check(10_000_000_000, 20_000_000_000, MEMINFO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MemTotal") && e.contains("10.0 GB"), "{e}");
        // no /proc/meminfo (another OS): no check
        check(u64::MAX / 2, u64::MAX / 2, "").unwrap();
        // a key that only starts like another is not taken for it
        assert_eq!(
            kb("MemAvailableX: 5 kB\nMemAvailable: 7 kB", "MemAvailable"),
            Some(7168)
        );
    }
}
