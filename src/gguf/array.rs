//! GGUF metadata arrays, stored compactly: a typed vector per element type, and strings as one
//! buffer with end offsets. A tokenizer's vocabulary is an array of 150–260k strings; as one
//! `Value` per element (32 bytes each, plus an allocation per string) Gemma 3's metadata took
//! 55 MB of heap, now ~4 MB.

use super::value::{Value, ValueType};

/// Many strings in one buffer: string `i` is `text[ends[i-1]..ends[i]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StringArray {
    text: String,
    ends: Vec<usize>,
}

impl StringArray {
    pub fn with_capacity(n: usize) -> Self {
        StringArray {
            text: String::new(),
            ends: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

impl<'a> FromIterator<&'a str> for StringArray {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut a = StringArray::default();
        for s in iter {
            a.push(s);
        }
        a
    }
}

/// A homogeneous metadata array. Nested arrays (which GGUF allows but no model uses) are not
/// supported.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(StringArray),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// Applies `$f` to the vector of every numeric variant.
macro_rules! each_vec {
    ($a:expr, $v:ident => $f:expr, $s:ident => $g:expr) => {
        match $a {
            Array::U8($v) => $f,
            Array::I8($v) => $f,
            Array::U16($v) => $f,
            Array::I16($v) => $f,
            Array::U32($v) => $f,
            Array::I32($v) => $f,
            Array::F32($v) => $f,
            Array::Bool($v) => $f,
            Array::U64($v) => $f,
            Array::I64($v) => $f,
            Array::F64($v) => $f,
            Array::String($s) => $g,
        }
    };
}

impl Array {
    /// An empty array of element type `elem`, or `None` for `ValueType::Array`.
    pub fn empty(elem: ValueType) -> Option<Self> {
        Array::from_values(elem, Vec::new()).ok()
    }

    /// The array of `items`, all of type `elem`; `Err` names the first item of another type
    /// (or `ValueType::Array` when `elem` is itself an array).
    pub fn from_values(elem: ValueType, items: Vec<Value>) -> Result<Self, ValueType> {
        macro_rules! collect {
            ($variant:ident) => {
                Array::$variant(
                    items
                        .into_iter()
                        .map(|v| match v {
                            Value::$variant(x) => Ok(x),
                            other => Err(other.value_type()),
                        })
                        .collect::<Result<_, _>>()?,
                )
            };
        }
        Ok(match elem {
            ValueType::U8 => collect!(U8),
            ValueType::I8 => collect!(I8),
            ValueType::U16 => collect!(U16),
            ValueType::I16 => collect!(I16),
            ValueType::U32 => collect!(U32),
            ValueType::I32 => collect!(I32),
            ValueType::F32 => collect!(F32),
            ValueType::Bool => collect!(Bool),
            ValueType::U64 => collect!(U64),
            ValueType::I64 => collect!(I64),
            ValueType::F64 => collect!(F64),
            ValueType::String => {
                let mut a = StringArray::with_capacity(items.len());
                for v in &items {
                    a.push(v.as_str().ok_or(v.value_type())?);
                }
                Array::String(a)
            }
            ValueType::Array => return Err(ValueType::Array),
        })
    }

    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        each_vec!(self, v => v.len(), s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a scalar [`Value`] (a string is copied).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(s) => Value::String(s.get(i)?.to_string()),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
        })
    }

    /// Every element as a scalar [`Value`].
    pub fn values(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The first `n` elements (all of them if there are fewer).
    pub fn truncated(&self, n: usize) -> Self {
        let mut a = self.clone();
        each_vec!(&mut a, v => v.truncate(n), s => *s = s.iter().take(n).collect());
        a
    }

    /// The strings, if this is an array of strings.
    pub fn as_strings(&self) -> Option<&StringArray> {
        match self {
            Array::String(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_arrays_keep_every_string_including_empty_ones() {
        let a: StringArray = ["a", "", "▁wörld", "<0x0A>"].into_iter().collect();
        assert_eq!(a.len(), 4);
        assert_eq!(a.iter().collect::<Vec<_>>(), ["a", "", "▁wörld", "<0x0A>"]);
        assert_eq!(a.get(4), None);
        let t = Array::String(a).truncated(2);
        assert_eq!(
            t.values().collect::<Vec<_>>(),
            [Value::String("a".into()), Value::String(String::new())]
        );
    }

    #[test]
    fn arrays_are_built_from_values_of_one_type_only() {
        let a = Array::from_values(ValueType::F32, vec![Value::F32(0.5), Value::F32(-1.0)]);
        assert_eq!(a, Ok(Array::F32(vec![0.5, -1.0])));
        assert_eq!(
            Array::from_values(ValueType::F32, vec![Value::F32(0.5), Value::I32(1)]),
            Err(ValueType::I32)
        );
        assert_eq!(Array::empty(ValueType::Array), None);
        assert_eq!(Array::empty(ValueType::I32).map(|a| a.len()), Some(0));
    }
}
