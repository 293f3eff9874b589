//! GGUF files: zero-copy reading over a memory map, and writing.
//!
//! [`GgufFile::open`] maps the file ([`mmap`] holds the crate's one `unsafe`), parses the header
//! ([`reader`]), and validates every tensor against the file before anything else sees it.
//! Tensor data is then *borrowed* from the map with [`GgufFile::tensor_data`]; it is never
//! copied at load. [`writer`] produces files (test fixtures now; quantize and synth later).
//! [`page_cache`] says how the system caches the mapped file (2 MiB mappings decode faster)
//! and can evict it so it is read back afresh.
//!
//! This module knows nothing about models or compute: hyper-parameters are read by
//! `crate::model::config` through the fallible getters of [`Metadata`], and block layouts of
//! quantized types live in `crate::quant`.

pub mod array;
pub mod dtype;
pub mod error;
pub mod mmap;
pub mod page_cache;
pub mod reader;
pub mod value;
pub mod writer;

pub use dtype::GgmlType;
pub use error::{GgufError, GgufErrorKind};
pub use mmap::FileBytes;
pub use value::{Array, Metadata, MetadataError, StringArray, Value, ValueType};
pub use writer::GgufWriter;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Shape, type and location of one tensor, as described by the file's header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: GgmlType,
    /// Dimensions in GGML order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    /// Offset of the data from the start of the tensor data section.
    pub offset: u64,
    /// Size of the data in bytes (validated against the file).
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Length of a row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of the other dimensions).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Rows `rows` of a matrix as a tensor of its own: the same bytes at an offset (rows are
    /// contiguous), for the parts of a fused weight (Phi-3's QKV, gate‖up). `None` when this
    /// is not a matrix or the range is not inside it.
    pub fn row_view(&self, rows: std::ops::Range<u64>) -> Option<TensorInfo> {
        if self.dims.len() != 2 || rows.start >= rows.end || rows.end > self.dims[1] {
            return None;
        }
        let rb = self.dtype.row_bytes(self.dims[0])?;
        Some(TensorInfo {
            name: format!("{}[rows {}..{}]", self.name, rows.start, rows.end),
            dtype: self.dtype,
            dims: vec![self.dims[0], rows.end - rows.start],
            offset: self.offset + rows.start * rb,
            n_bytes: (rows.end - rows.start) * rb,
        })
    }
}

/// An open GGUF file: parsed header plus the mapped bytes.
pub struct GgufFile {
    path: PathBuf,
    bytes: FileBytes,
    header: reader::Header,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let bytes = FileBytes::open(path)
            .map_err(|e| GgufError::new(path.display().to_string(), GgufErrorKind::Io(e)))?;
        Self::from_file_bytes(path.to_path_buf(), bytes)
    }

    /// Parses a GGUF held in memory; `label` names it in errors.
    pub fn from_bytes(label: &str, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_file_bytes(PathBuf::from(label), FileBytes::Owned(bytes))
    }

    fn from_file_bytes(path: PathBuf, bytes: FileBytes) -> Result<Self, GgufError> {
        let header = reader::parse(&bytes)
            .map_err(|kind| GgufError::new(path.display().to_string(), kind))?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path,
            bytes,
            header,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wraps an error kind with this file's name.
    pub fn error(&self, kind: GgufErrorKind) -> GgufError {
        GgufError::new(self.path.display().to_string(), kind)
    }

    pub fn version(&self) -> u32 {
        self.header.version
    }

    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Total size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether tensor data is memory-mapped (true for files opened from disk).
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.header.tensors[i])
    }

    /// Like [`Self::tensor_info`], but a missing tensor is an error naming it and the file.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor_info(name)
            .ok_or_else(|| self.error(GgufErrorKind::MissingTensor(name.to_string())))
    }

    /// Byte range of a tensor's data within the file (validated when the file was opened).
    pub fn tensor_range(&self, info: &TensorInfo) -> std::ops::Range<usize> {
        let start = (self.header.data_offset + info.offset) as usize;
        start..start + info.n_bytes as usize
    }

    /// The tensor's data, borrowed from the mapping (no copy).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.bytes[self.tensor_range(info)]
    }

    /// Hints the OS to read the file ahead (see [`FileBytes::prefetch`]).
    pub fn prefetch(&self) {
        self.bytes.prefetch();
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the mapped pages wholly inside `range` from the resident set, for bytes a backend
    /// copied and will not read again; reading them later is correct, only slower. Returns the
    /// range released (see [`FileBytes::release`]).
    pub fn release(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        self.bytes.release(range)
    }

    /// How the system caches the mapped file ([`FileBytes::residency`]).
    pub fn residency(&self) -> Option<page_cache::Residency> {
        self.bytes.residency()
    }
}

#[cfg(test)]
mod tests;
