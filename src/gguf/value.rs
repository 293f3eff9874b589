//! GGUF metadata values: the thirteen value types, and the fallible getters models and the
//! tokenizer use to read hyper-parameters. A getter's error always names the key.

pub use super::array::{Array, StringArray};
use std::collections::BTreeMap;
use std::fmt;

/// The type tag of a metadata value, as stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest number of bytes one value of this type occupies in a file; used to bound array
    /// lengths by the bytes left before allocating anything.
    pub fn min_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// A homogeneous array, stored compactly (see [`Array`]).
    Array(Array),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
            Value::Array(..) => ValueType::Array,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// A short rendering for `tokenfab info`: long arrays are summarised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) if s.chars().count() > 60 => {
                let short: String = s.chars().take(57).collect();
                write!(f, "{short:?}...")
            }
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) if a.len() > 8 => {
                write!(f, "[{:?} x {}]", a.elem_type(), a.len())
            }
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.values().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

/// Why a metadata lookup failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetadataError {
    #[error("missing metadata key `{0}`")]
    Missing(String),
    #[error("metadata key `{key}` has type {found:?}, expected {expected}")]
    WrongType {
        key: String,
        found: ValueType,
        expected: &'static str,
    },
    #[error("metadata key `{key}`: value {value} is out of range ({why})")]
    OutOfRange {
        key: String,
        value: String,
        why: &'static str,
    },
}

/// Ordered metadata of one file, with typed fallible getters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    pub(crate) map: BTreeMap<String, Value>,
}

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        self.map.insert(key.into(), value)
    }

    fn require(&self, key: &str) -> Result<&Value, MetadataError> {
        self.map
            .get(key)
            .ok_or_else(|| MetadataError::Missing(key.to_string()))
    }

    fn wrong(key: &str, v: &Value, expected: &'static str) -> MetadataError {
        MetadataError::WrongType {
            key: key.to_string(),
            found: v.value_type(),
            expected,
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, MetadataError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong(key, v, "unsigned integer"))
    }

    /// An unsigned integer that must fit `usize` and be at least `min`.
    pub fn get_usize_min(&self, key: &str, min: usize) -> Result<usize, MetadataError> {
        let v = self.get_u64(key)?;
        let out_of_range = |why| MetadataError::OutOfRange {
            key: key.to_string(),
            value: v.to_string(),
            why,
        };
        let u = usize::try_from(v).map_err(|_| out_of_range("does not fit usize"))?;
        if u < min {
            return Err(out_of_range("too small"));
        }
        Ok(u)
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, MetadataError> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Self::wrong(key, v, "number"))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, MetadataError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, v, "bool"))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, v, "string"))
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, MetadataError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, v, "array"))
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, MetadataError> {
        let v = self.require(key)?;
        match v.as_array().and_then(Array::as_strings) {
            Some(a) => Ok(a.iter().collect()),
            None => Err(Self::wrong(key, v, "array of strings")),
        }
    }

    /// An array of numbers as f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, MetadataError> {
        let v = self.require(key)?;
        match v.as_array() {
            Some(Array::F32(a)) => Ok(a.clone()),
            Some(a) if !matches!(a, Array::Bool(_) | Array::String(_)) => a
                .values()
                .map(|x| {
                    x.as_f64()
                        .map(|x| x as f32)
                        .ok_or_else(|| Self::wrong(key, &x, "array of numbers"))
                })
                .collect(),
            _ => Err(Self::wrong(key, v, "array of numbers")),
        }
    }

    /// An array of integers as i64 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, MetadataError> {
        let v = self.require(key)?;
        match v.as_array() {
            Some(a) => a
                .values()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| Self::wrong(key, v, "array of integers"))
                })
                .collect(),
            None => Err(Self::wrong(key, v, "array of integers")),
        }
    }

    /// Optional variants: `Ok(None)` when the key is absent, an error when it has the wrong type.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, MetadataError> {
        self.optional(key, Self::get_u64)
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, MetadataError> {
        self.optional(key, Self::get_f32)
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, MetadataError> {
        self.optional(key, Self::get_bool)
    }
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, MetadataError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(_) => self.get_str(key).map(Some),
        }
    }

    fn optional<T>(
        &self,
        key: &str,
        get: impl Fn(&Self, &str) -> Result<T, MetadataError>,
    ) -> Result<Option<T>, MetadataError> {
        if self.map.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_name_the_key_on_error() {
        let mut md = Metadata::default();
        md.insert("a.count", Value::U32(7));
        md.insert("a.name", Value::String("x".into()));
        md.insert("a.neg", Value::I32(-1));
        assert_eq!(md.get_u64("a.count"), Ok(7));
        assert_eq!(md.get_f32("a.count"), Ok(7.0));
        let e = md.get_u64("a.name").unwrap_err().to_string();
        assert!(e.contains("a.name") && e.contains("String"), "{e}");
        let e = md.get_u64("missing.key").unwrap_err().to_string();
        assert!(e.contains("missing.key"), "{e}");
        assert!(md.get_u64("a.neg").is_err(), "negative is not unsigned");
        assert_eq!(md.opt_u64("nope"), Ok(None));
        assert!(md.opt_u64("a.name").is_err());
        let e = md.get_usize_min("a.count", 8).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }
}
