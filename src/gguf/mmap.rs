//! The one place tokenfab memory-maps a file: the bytes of a GGUF model.
//!
//! Everything else borrows tensor data from the [`FileBytes`] this module returns, so a model
//! loads without copying its weights. Keeping the `unsafe` here, in one small module, makes it
//! easy to audit; nothing else in the crate maps files or drops pages of a mapping
//! ([`FileBytes::release`]).

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

/// Read-only bytes of a model file: memory-mapped from disk, or owned (test fixtures, files
/// written in memory).
pub enum FileBytes {
    /// A read-only private mapping of the whole file.
    Mapped(memmap2::Mmap),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `file` read-only.
    ///
    /// # Safety
    ///
    /// This function is safe to call, but relies on an assumption the operating system cannot
    /// enforce: that no other process truncates or rewrites the file while it is mapped. If
    /// that happens, reads of the mapping may see changed bytes or fault (SIGBUS). Model files
    /// are treated as immutable artefacts (the fetch script replaces them atomically with a
    /// rename, which leaves existing mappings intact), which is the same contract llama.cpp and
    /// every other mmap-based loader relies on.
    pub fn map(file: &File) -> std::io::Result<Self> {
        // SAFETY: the mapping is read-only and private; see the `# Safety` section above for
        // the one assumption (the file is not truncated while mapped) that makes reads sound.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        Ok(FileBytes::Mapped(map))
    }

    /// Opens and maps the file at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        Self::map(&file)
    }

    /// Asks the kernel to start reading the whole mapping in (madvise WILLNEED), so the first
    /// forward pass does not stall on page faults of a cold file, and (Linux) to cache what it
    /// reads in 2 MiB folios mapped whole (madvise HUGEPAGE; see [`super::page_cache`]).
    /// Hints; errors are ignored.
    pub fn prefetch(&self) {
        #[cfg(unix)]
        if let FileBytes::Mapped(m) = self {
            #[cfg(target_os = "linux")]
            let _ = m.advise(memmap2::Advice::HugePage);
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }

    /// Drops the pages wholly inside `range` from this process's view of the mapping (madvise
    /// DONTNEED; Linux), for bytes a backend has copied and will not read again (the CPU's
    /// `--repack` copies): they leave the resident set at once instead of staying mapped
    /// beside their copy. Reading them again is correct, only slower: the kernel maps them
    /// back from the page cache or the file. Returns the range released, `range` narrowed to
    /// whole pages (empty for owned bytes, elsewhere than Linux, or a range holding no whole
    /// page); a range past the end is cut.
    ///
    /// # Safety
    ///
    /// Safe to call. memmap2 marks DONTNEED unsafe because on private or anonymous mappings it
    /// replaces written contents with the file's or zeros; this mapping is shared, read-only
    /// and never written, so the bytes a later read sees are the file's, as before — under the
    /// same assumption as [`FileBytes::map`] (the file is not rewritten while mapped).
    pub fn release(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        #[cfg(target_os = "linux")]
        if let FileBytes::Mapped(m) = self {
            let page = rustix::param::page_size();
            let start = range.start.next_multiple_of(page);
            let end = range.end.min(m.len()) / page * page;
            if start >= end {
                return 0..0;
            }
            // first out of the 2 MiB mappings (`prefetch`): a fault next door would otherwise map
            // a whole 2 MiB folio again, released pages included (measured on the 1.5B: 65 of
            // its 757 MB back by the end of the load, 98 MB after one request; none with
            // this); a 2 MiB range with a part advised otherwise is mapped page by page
            let _ = m.advise_range(memmap2::Advice::NoHugePage, start, end - start);
            // SAFETY: a shared read-only file mapping, never written: pages dropped here are
            // mapped again with the same bytes when read (see `# Safety` above); the range is
            // inside the mapping and page-aligned.
            let dropped = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
            return if dropped.is_ok() { start..end } else { 0..0 };
        }
        let _ = range;
        0..0
    }

    /// Whether the bytes come from a memory mapping (as opposed to an owned buffer).
    pub fn is_mapped(&self) -> bool {
        matches!(self, FileBytes::Mapped(_))
    }

    /// How much of the mapping is in memory and how much of that is mapped 2 MiB at a time
    /// ([`super::page_cache`]); `None` for owned bytes or where the system does not say.
    pub fn residency(&self) -> Option<super::page_cache::Residency> {
        match self {
            FileBytes::Mapped(m) => {
                let at = m.as_ptr() as usize;
                super::page_cache::residency(at..at + m.len())
            }
            FileBytes::Owned(_) => None,
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}
