//! How the operating system caches a mapped model file, which moves decode speed by a few
//! per cent: reading it, and starting it afresh.
//!
//! A mapped model is read from the kernel's page cache. On Linux with large folios (ext4,
//! xfs, …) a file read in from disk is cached in folios of up to 2 MiB, and a 2 MiB-aligned
//! one is mapped by a single page-table entry (`FilePmdMapped` in `/proc/self/smaps`): one TLB
//! entry per 2 MiB instead of 512. How much of a file gets there depends on how it was read:
//! sequential reads (`cat`) grow the readahead window to 2 MiB, but the loader touches
//! tensors out of file order, and a cold 1.5B it read through plain page faults was only 15 %
//! in 2 MiB mappings, 96 % once the mapping is advised `MADV_HUGEPAGE`
//! ([`super::FileBytes::prefetch`] does it), which makes faults read whole 2 MiB folios. A file
//! *written* on this machine (a model just assembled by `scripts/fetch-models.sh`, a `cp`)
//! stays cached in 4 KiB pages until evicted, whatever the advice. Measured on a 2-vCPU Zen 4
//! VM, Qwen2.5-Coder 1.5B decode (`tokenfab bench -p 0 -n 128 -r 3`), alternated: a copy at 0 %
//! 31.2 / 31.7 / 31.8 tok/s on two threads (19.4 / 19.7 on one) against the file at 97 %: 32.4
//! / 34.1 / 32.0 (20.6 / 20.4); the cold file read by the loader without the advice (15 %)
//! 30.8 / 31.5 / 32.6, with it (96 %) 33.1 / 34.1 / 33.9.
//!
//! [`residency`] reports the share of a mapping that is mapped 2 MiB at a time (`tokenfab
//! bench` prints it); [`evict`] drops a file's cached pages (`posix_fadvise DONTNEED`: clean
//! pages no process maps; no privileges needed) so the next read caches it afresh: the
//! portable, unprivileged form of dropping the whole page cache. Nothing here changes bytes
//! anyone reads; on other systems both report that they cannot.

use std::path::Path;

/// How much of a mapping is in memory, and how much of that is mapped 2 MiB at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Residency {
    /// Bytes of the mapping in memory (`Rss`).
    pub resident: u64,
    /// Of those, bytes mapped by 2 MiB page-table entries (`FilePmdMapped`).
    pub huge: u64,
}

impl Residency {
    /// `huge` as a percentage of `resident` (`None` when nothing is resident).
    pub fn huge_pct(&self) -> Option<f64> {
        (self.resident > 0).then(|| 100.0 * self.huge as f64 / self.resident as f64)
    }
}

/// The residency of the mapping of addresses `span` (its bytes), from `/proc/self/smaps`, summed over
/// the pieces the kernel may have split it into (advice on part of it, as
/// [`super::FileBytes::release`] gives, makes a piece of its own); `None` where the system
/// does not say (not Linux, no mapping starts at `span.start`, an unreadable file).
pub fn residency(span: std::ops::Range<usize>) -> Option<Residency> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    parse_smaps(&smaps, span)
}

/// The summed `Rss` and `FilePmdMapped` of the mappings that start inside `span` in smaps
/// text; `None` unless one starts at `span.start` and every one of them reports both.
fn parse_smaps(smaps: &str, span: std::ops::Range<usize>) -> Option<Residency> {
    // a mapping's header: `7f3beaa00000-7f3c2d390000 r--s 00000000 fe:00 10010673  /path`
    let header = |l: &str| {
        let (a, rest) = l.split_once('-')?;
        let b = rest.split_once(' ')?.0;
        let a = usize::from_str_radix(a, 16).ok()?;
        Some(a..usize::from_str_radix(b, 16).ok()?)
    };
    let (mut total, mut first) = (
        Residency {
            resident: 0,
            huge: 0,
        },
        false,
    );
    let mut lines = smaps.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(m) = header(l) else { continue };
        // (a piece starts inside the span; the last one ends at a page boundary past it)
        if !span.contains(&m.start) {
            continue;
        }
        first |= m.start == span.start;
        let (mut resident, mut huge) = (None, None);
        while let Some(l) = lines.next_if(|l| header(l).is_none()) {
            let Some((key, rest)) = l.split_once(':') else {
                continue;
            };
            let kb = || rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok();
            match key {
                "Rss" => resident = kb(),
                "FilePmdMapped" => huge = kb(),
                _ => {}
            }
        }
        total.resident += resident? * 1024;
        total.huge += huge? * 1024;
    }
    first.then_some(total)
}

/// Drops the file's pages from the page cache where no process maps them, so the next read
/// caches it afresh (on Linux with large folios: in folios up to 2 MiB, mapped whole). Call it
/// before mapping the file: pages mapped stay, including this process's own. Evicted pages are
/// read back from disk, a second or so for a 1 GB model.
pub fn evict(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(file);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "evicting a file's cached pages is implemented on Linux only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two mappings in the kernel's format (6.18): the model's, then an anonymous one.
    const SMAPS: &str = "\
7f3beaa00000-7f3c2d390000 r--s 00000000 fe:00 10010673                   /m/model.gguf
Size:            1091136 kB
KernelPageSize:        4 kB
Rss:              966592 kB
Pss:              966592 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:    464896 kB
THPeligible:           0
VmFlags: rd mr me ms
7f3c2d511000-7f3c2d644000 rw-p 00000000 00:00 0
Size:               1228 kB
Rss:                1228 kB
FilePmdMapped:         0 kB
VmFlags: rd wr mr mw me ac
";

    #[test]
    fn smaps_should_give_the_mapping_at_the_address() {
        let r = parse_smaps(SMAPS, 0x7f3b_eaa0_0000..0x7f3c_2d39_0000).unwrap();
        assert_eq!(
            r,
            Residency {
                resident: 966_592 * 1024,
                huge: 464_896 * 1024
            }
        );
        let pct = r.huge_pct().unwrap();
        assert!((pct - 48.097).abs() < 1e-3, "{pct}");
        let anon = parse_smaps(SMAPS, 0x7f3c_2d51_1000..0x7f3c_2d64_4000).unwrap();
        assert_eq!((anon.resident, anon.huge), (1228 * 1024, 0));
        // an address inside a mapping, or none at all, names no mapping
        assert_eq!(parse_smaps(SMAPS, 0x7f3b_eaa0_1000..0x7f3c_2d39_0000), None);
        assert_eq!(parse_smaps("", 0x7f3b_eaa0_0000..0x7f3c_2d39_0000), None);
        // a kernel without the field says nothing rather than 0 %
        let old = SMAPS.replace("FilePmdMapped:    464896 kB\n", "");
        assert_eq!(parse_smaps(&old, 0x7f3b_eaa0_0000..0x7f3c_2d39_0000), None);
        assert_eq!(
            Residency {
                resident: 0,
                huge: 0
            }
            .huge_pct(),
            None
        );
        // a mapping split in three by advice on its middle: the pieces add up; the anonymous
        // mapping after it is not the file's
        let split = SMAPS
            .replace(
                "7f3beaa00000-7f3c2d390000 r--s",
                "7f3beaa00000-7f3bf0000000 r--s",
            )
            .replace(
                "7f3c2d511000-7f3c2d644000",
                "7f3bf0000000-7f3bf1000000 r--s 05600000 fe:00 10010673 /m/model.gguf\n\
                 Rss: 4 kB\nFilePmdMapped: 0 kB\nVmFlags: rd mr me ms nh\n\
                 7f3bf1000000-7f3c2d390000 r--s 06600000 fe:00 10010673 /m/model.gguf\n\
                 Rss: 100 kB\nFilePmdMapped: 0 kB\nVmFlags: rd mr me ms\n\
                 7f3c2d511000-7f3c2d644000",
            );
        let r = parse_smaps(&split, 0x7f3b_eaa0_0000..0x7f3c_2d39_0000).unwrap();
        assert_eq!(
            r,
            Residency {
                resident: (966_592 + 4 + 100) * 1024,
                huge: 464_896 * 1024
            }
        );
    }
}
