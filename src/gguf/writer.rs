//! Writing GGUF v3 files: metadata in insertion order, tensor infos, aligned tensor data.
//!
//! Used by the test suite to generate fixtures (and later by `quantize` and `synth`). The
//! writer checks what it is given (names unique, data size matching type and shape) so it
//! cannot produce a file its own reader would reject.

use super::dtype::GgmlType;
use super::error::GgufErrorKind;
use super::value::{Array, Value};
use std::collections::HashSet;
use std::io::Write;

struct PendingTensor {
    name: String,
    dtype: GgmlType,
    dims: Vec<u64>,
    /// `None` for tensors whose data [`GgufWriter::write_with`] asks for while writing.
    data: Option<Vec<u8>>,
    n_bytes: u64,
}

/// Builds a GGUF file in memory-light fashion: tensors are kept until [`GgufWriter::write`].
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: super::reader::DEFAULT_ALIGNMENT,
        }
    }

    /// Adds (or replaces) a metadata key. `general.alignment` also sets the data alignment.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        if key == "general.alignment" {
            if let Some(a) = value.as_u64() {
                self.alignment = a;
            }
        }
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    /// Adds a tensor. `dims` in GGML order (`dims[0]` contiguous); `data` must be exactly the
    /// tensor's size for `dtype`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufErrorKind> {
        let n = Self::size(name, dtype, dims)?;
        if n != data.len() as u64 {
            return Err(GgufErrorKind::Write(format!(
                "tensor `{name}`: {} bytes given, {n} expected for {dtype} {dims:?}",
                data.len()
            )));
        }
        self.push(name, dtype, dims, Some(data), n)
    }

    /// Declares a tensor whose data is produced while writing (see [`Self::write_with`]), so a
    /// large model never has to be held in memory.
    pub fn add_tensor_info(
        &mut self,
        name: &str,
        dtype: GgmlType,
        dims: &[u64],
    ) -> Result<&mut Self, GgufErrorKind> {
        let n = Self::size(name, dtype, dims)?;
        self.push(name, dtype, dims, None, n)
    }

    fn size(name: &str, dtype: GgmlType, dims: &[u64]) -> Result<u64, GgufErrorKind> {
        let row = dims.first().copied().unwrap_or(1);
        let rows: u64 = dims.iter().skip(1).product();
        dtype
            .row_bytes(row)
            .and_then(|b| b.checked_mul(rows))
            .ok_or_else(|| {
                GgufErrorKind::Write(format!(
                    "tensor `{name}`: shape {dims:?} is not valid for {dtype}"
                ))
            })
    }

    fn push(
        &mut self,
        name: &str,
        dtype: GgmlType,
        dims: &[u64],
        data: Option<Vec<u8>>,
        n_bytes: u64,
    ) -> Result<&mut Self, GgufErrorKind> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufErrorKind::DuplicateTensor(name.to_string()));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dtype,
            dims: dims.to_vec(),
            data,
            n_bytes,
        });
        Ok(self)
    }

    /// Writes the file; every tensor must have been given its data.
    pub fn write<W: Write>(&self, out: &mut W) -> Result<(), GgufErrorKind> {
        self.write_with(out, &mut |i| {
            Err(GgufErrorKind::Write(format!(
                "tensor `{}` has no data",
                self.tensors[i].name
            )))
        })
    }

    /// Writes the file, asking `data(i)` for the bytes of each tensor declared with
    /// [`Self::add_tensor_info`] (in order), and checking their size.
    pub fn write_with<W: Write>(
        &self,
        out: &mut W,
        data: &mut dyn FnMut(usize) -> Result<Vec<u8>, GgufErrorKind>,
    ) -> Result<(), GgufErrorKind> {
        if self.alignment == 0 || !self.alignment.is_power_of_two() {
            return Err(GgufErrorKind::BadAlignment(self.alignment));
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            if !names.insert(&t.name) {
                return Err(GgufErrorKind::DuplicateTensor(t.name.clone()));
            }
        }
        let mut header = Vec::new();
        header.extend_from_slice(&super::reader::MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.dtype.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.n_bytes).div_ceil(self.alignment) * self.alignment;
        }
        pad_to(&mut header, self.alignment);
        out.write_all(&header).map_err(GgufErrorKind::Io)?;
        let mut written = 0u64;
        for (i, (t, &off)) in self.tensors.iter().zip(&offsets).enumerate() {
            let pad = vec![0u8; (off - written) as usize];
            out.write_all(&pad).map_err(GgufErrorKind::Io)?;
            let produced;
            let bytes: &[u8] = match &t.data {
                Some(d) => d,
                None => {
                    produced = data(i)?;
                    &produced
                }
            };
            if bytes.len() as u64 != t.n_bytes {
                return Err(GgufErrorKind::Write(format!(
                    "tensor `{}`: {} bytes produced, {} expected",
                    t.name,
                    bytes.len(),
                    t.n_bytes
                )));
            }
            out.write_all(bytes).map_err(GgufErrorKind::Io)?;
            written = off + t.n_bytes;
        }
        let pad = vec![0u8; (offset - written) as usize];
        out.write_all(&pad).map_err(GgufErrorKind::Io)?;
        Ok(())
    }

    /// Writes the file into a new byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufErrorKind> {
        let mut v = Vec::new();
        self.write(&mut v)?;
        Ok(v)
    }
}

fn pad_to(buf: &mut Vec<u8>, alignment: u64) {
    let len = buf.len() as u64;
    let target = len.div_ceil(alignment) * alignment;
    buf.resize(target as usize, 0);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &Value) -> Result<(), GgufErrorKind> {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(*x as u8),
        Value::String(s) => put_str(buf, s),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            buf.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
            buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
            match a {
                Array::String(strings) => strings.iter().for_each(|s| put_str(buf, s)),
                _ => {
                    for item in a.values() {
                        put_value(buf, &item)?;
                    }
                }
            }
        }
    }
    Ok(())
}
