//! Parsing a GGUF header (metadata and tensor infos) from bytes, with every size, count, offset
//! and string length checked against the bytes that are actually there.
//!
//! The parser never allocates in proportion to a count it has not first bounded by the
//! remaining file size, so a hostile header cannot make it allocate gigabytes or panic.

use super::dtype::GgmlType;
use super::error::GgufErrorKind as K;
use super::value::{Array, Metadata, StringArray, Value, ValueType};
use super::TensorInfo;
use std::collections::HashMap;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const MAX_DIMS: u32 = 4;

/// The parsed header of a GGUF file.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Offset of the tensor data section from the start of the file.
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], K> {
        if n > self.remaining() {
            return Err(K::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], K> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, K> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, K> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string; invalid UTF-8 is an error attributed to `key`.
    fn string(&mut self, key: &str, what: &dyn Fn() -> String) -> Result<String, K> {
        self.str(key, what).map(str::to_string)
    }

    /// A length-prefixed UTF-8 string, borrowed from the buffer.
    fn str(&mut self, key: &str, what: &dyn Fn() -> String) -> Result<&'a str, K> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| K::InvalidUtf8 {
            key: key.to_string(),
        })
    }
}

/// Bounds a count read from the file: `count` items of at least `min_size` bytes each must fit
/// in the bytes that remain.
fn check_count(c: &Cursor, what: &'static str, count: u64, min_size: u64) -> Result<usize, K> {
    let impossible = K::ImpossibleCount {
        what,
        count,
        len: c.buf.len() as u64,
    };
    match count.checked_mul(min_size) {
        Some(total) if total <= c.remaining() => usize::try_from(count).map_err(|_| impossible),
        _ => Err(impossible),
    }
}

fn read_value(c: &mut Cursor, key: &str, ty: ValueType) -> Result<Value, K> {
    let what = || format!("value of metadata key `{key}`");
    let w: &dyn Fn() -> String = &what;
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(w)?[0]),
        ValueType::I8 => Value::I8(c.array::<1>(w)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(w)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(w)?)),
        ValueType::U32 => Value::U32(c.u32(w)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(w)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(w)?)),
        ValueType::Bool => Value::Bool(c.array::<1>(w)?[0] != 0),
        ValueType::String => Value::String(c.string(key, w)?),
        ValueType::U64 => Value::U64(c.u64(w)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(w)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(w)?)),
        ValueType::Array => {
            let id = c.u32(w)?;
            let elem = ValueType::from_id(id).ok_or_else(|| K::UnknownValueType {
                key: key.to_string(),
                id,
            })?;
            if elem == ValueType::Array {
                return Err(K::NestedArray {
                    key: key.to_string(),
                });
            }
            let n = c.u64(w)?;
            let n = check_count(c, "array element", n, elem.min_size())?;
            Value::Array(read_array(c, key, elem, n)?)
        }
    })
}

/// `n` elements of type `elem` (not an array: checked by the caller), into a typed vector;
/// strings go into one buffer.
fn read_array(c: &mut Cursor, key: &str, elem: ValueType, n: usize) -> Result<Array, K> {
    let what = || format!("element of metadata array `{key}`");
    let w: &dyn Fn() -> String = &what;
    macro_rules! numbers {
        ($variant:ident, $t:ty) => {
            Array::$variant(
                (0..n)
                    .map(|_| Ok(<$t>::from_le_bytes(c.array(w)?)))
                    .collect::<Result<_, K>>()?,
            )
        };
    }
    Ok(match elem {
        ValueType::U8 => numbers!(U8, u8),
        ValueType::I8 => numbers!(I8, i8),
        ValueType::U16 => numbers!(U16, u16),
        ValueType::I16 => numbers!(I16, i16),
        ValueType::U32 => numbers!(U32, u32),
        ValueType::I32 => numbers!(I32, i32),
        ValueType::F32 => numbers!(F32, f32),
        ValueType::U64 => numbers!(U64, u64),
        ValueType::I64 => numbers!(I64, i64),
        ValueType::F64 => numbers!(F64, f64),
        ValueType::Bool => Array::Bool(
            (0..n)
                .map(|_| Ok(c.array::<1>(w)?[0] != 0))
                .collect::<Result<_, K>>()?,
        ),
        ValueType::String => {
            let mut a = StringArray::with_capacity(n);
            for _ in 0..n {
                a.push(c.str(key, w)?);
            }
            Array::String(a)
        }
        ValueType::Array => {
            return Err(K::NestedArray {
                key: key.to_string(),
            })
        }
    })
}

/// Parses the header of a GGUF file held in `buf` and validates every tensor against the file.
pub fn parse(buf: &[u8]) -> Result<Header, K> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if magic != MAGIC {
        return Err(K::BadMagic(magic));
    }
    let version = c.u32(&|| "version".into())?;
    if !(2..=3).contains(&version) {
        return Err(K::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;
    // A key-value pair needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
    // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    let n_kv = check_count(&c, "metadata", n_kv, 13)?;
    let n_tensors = check_count(&c, "tensor", n_tensors, 24)?;

    let mut metadata = Metadata::default();
    for i in 0..n_kv {
        let key = c.string("<key>", &|| format!("metadata key #{i}"))?;
        let id = c.u32(&|| format!("type of metadata key `{key}`"))?;
        let ty = ValueType::from_id(id).ok_or_else(|| K::UnknownValueType {
            key: key.clone(),
            id,
        })?;
        let value = read_value(&mut c, &key, ty)?;
        if metadata.map.contains_key(&key) {
            return Err(K::DuplicateKey(key));
        }
        metadata.map.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            Some(a) => return Err(K::BadAlignment(a)),
            None => return Err(K::BadAlignment(0)),
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names: HashMap<String, usize> = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string("<tensor name>", &|| format!("name of tensor #{i}"))?;
        let what = || format!("info of tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(K::TooManyDims { name, n_dims });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let dtype = GgmlType::from_id(type_id).ok_or_else(|| K::UnknownTensorType {
            name: name.clone(),
            id: type_id,
        })?;
        let bad_shape = |why| K::BadShape {
            name: name.clone(),
            dims: dims.clone(),
            dtype: dtype.to_string(),
            why,
        };
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad_shape("element count overflows"))?;
        let row = dims.first().copied().unwrap_or(1);
        let row_bytes = dtype
            .row_bytes(row)
            .ok_or_else(|| bad_shape("first dimension is not a multiple of the block size"))?;
        let n_bytes = row_bytes
            .checked_mul(n_elements.checked_div(row).unwrap_or(0))
            .ok_or_else(|| bad_shape("byte size overflows"))?;
        if offset % alignment != 0 {
            return Err(K::Misaligned {
                name,
                offset,
                alignment,
            });
        }
        if names.insert(name.clone(), i).is_some() {
            return Err(K::DuplicateTensor(name));
        }
        tensors.push(TensorInfo {
            name,
            dtype,
            dims,
            offset,
            n_bytes,
        });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let len = buf.len() as u64;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(_), Some(end)) if end <= len => {}
            _ => {
                return Err(K::TensorOutOfBounds {
                    name: t.name.clone(),
                    start: data_offset.saturating_add(t.offset),
                    end: data_offset
                        .saturating_add(t.offset)
                        .saturating_add(t.n_bytes),
                    len,
                })
            }
        }
    }
    // Tensors must not overlap: sort by offset and compare neighbours.
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[0].offset + w[0].n_bytes > w[1].offset {
            return Err(K::Overlap {
                name: w[1].name.clone(),
                other: w[0].name.clone(),
            });
        }
    }

    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}
