//! Errors from reading or writing GGUF files. Every error names the file and, where there is
//! one, the metadata key or tensor it concerns.

use std::fmt;

/// What went wrong, without the file name (see [`GgufError`]).
#[derive(Debug, thiserror::Error)]
pub enum GgufErrorKind {
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (magic bytes {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (tokenfab reads versions 2 and 3; a huge number may mean a big-endian file)")]
    UnsupportedVersion(u32),
    #[error("truncated: needed {needed} bytes at offset {offset} while reading {what}, but the file has {len} bytes")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("{what} count {count} is impossible for a file of {len} bytes")]
    ImpossibleCount {
        what: &'static str,
        count: u64,
        len: u64,
    },
    #[error("metadata key `{key}`: unknown value type {id}")]
    UnknownValueType { key: String, id: u32 },
    #[error("metadata key `{key}`: nested arrays are not supported")]
    NestedArray { key: String },
    #[error("metadata key `{key}`: invalid UTF-8 in string")]
    InvalidUtf8 { key: String },
    #[error("duplicate metadata key `{0}`")]
    DuplicateKey(String),
    #[error("metadata key `general.alignment` = {0} must be a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor `{name}`: unknown tensor type id {id}")]
    UnknownTensorType { name: String, id: u32 },
    #[error("tensor `{name}`: {n_dims} dimensions (at most 4 supported)")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor `{name}`: bad shape {dims:?} for type {dtype} ({why})")]
    BadShape {
        name: String,
        dims: Vec<u64>,
        dtype: String,
        why: &'static str,
    },
    #[error(
        "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error(
        "tensor `{name}`: data [{start}, {end}) extends past the end of the file ({len} bytes)"
    )]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("duplicate tensor name `{0}`")]
    DuplicateTensor(String),
    #[error("tensor `{0}` not found")]
    MissingTensor(String),
    #[error("tensor `{name}` overlaps tensor `{other}`")]
    Overlap { name: String, other: String },
    #[error("writer: {0}")]
    Write(String),
}

/// An error about one GGUF file.
#[derive(Debug)]
pub struct GgufError {
    /// The file (path, or a label such as `<memory>`).
    pub file: String,
    pub kind: GgufErrorKind,
}

impl GgufError {
    pub fn new(file: impl Into<String>, kind: GgufErrorKind) -> Self {
        GgufError {
            file: file.into(),
            kind,
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.kind)
    }
}

impl std::error::Error for GgufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            GgufErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
