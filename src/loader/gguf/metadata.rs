//! GGUF metadata values and typed, key-checked access to them.

use std::borrow::Cow;
use std::collections::HashMap;

use super::GgufError;

/// On-disk id of a metadata value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MetadataValueType {
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

impl MetadataValueType {
    /// Looks up a value type by id; `None` for ids outside `0..=12`.
    pub fn from_id(id: u32) -> Option<Self> {
        use MetadataValueType::*;
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

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Smallest possible encoding of one value of this type. Used to bound
    /// header counts by the bytes left before anything is allocated.
    pub fn min_encoded_size(self) -> u64 {
        use MetadataValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            // u64 length prefix
            String => 8,
            // u32 element type + u64 count
            Array => 12,
        }
    }

    /// Lower-case type name used in error messages.
    pub fn name(self) -> &'static str {
        use MetadataValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetadataArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array, stored unboxed per element type because
/// tokenizer vocabularies hold tens of thousands of entries.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Each inner array carries its own element type.
    Array(Vec<MetadataArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetadataValue {
    /// The value's type id.
    pub fn value_type(&self) -> MetadataValueType {
        use MetadataValue as V;
        use MetadataValueType as T;
        match self {
            V::U8(_) => T::U8,
            V::I8(_) => T::I8,
            V::U16(_) => T::U16,
            V::I16(_) => T::I16,
            V::U32(_) => T::U32,
            V::I32(_) => T::I32,
            V::F32(_) => T::F32,
            V::Bool(_) => T::Bool,
            V::String(_) => T::String,
            V::Array(_) => T::Array,
            V::U64(_) => T::U64,
            V::I64(_) => T::I64,
            V::F64(_) => T::F64,
        }
    }

    /// Type name for error messages; arrays name their element type.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetadataValue::Array(a) => a.type_name(),
            other => other.value_type().name(),
        }
    }

    /// Any integer scalar widened losslessly; `None` for non-integers.
    pub fn as_i128(&self) -> Option<i128> {
        use MetadataValue as V;
        Some(match *self {
            V::U8(v) => v.into(),
            V::I8(v) => v.into(),
            V::U16(v) => v.into(),
            V::I16(v) => v.into(),
            V::U32(v) => v.into(),
            V::I32(v) => v.into(),
            V::U64(v) => v.into(),
            V::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl MetadataArray {
    /// Element type id.
    pub fn element_type(&self) -> MetadataValueType {
        use MetadataArray as A;
        use MetadataValueType as T;
        match self {
            A::U8(_) => T::U8,
            A::I8(_) => T::I8,
            A::U16(_) => T::U16,
            A::I16(_) => T::I16,
            A::U32(_) => T::U32,
            A::I32(_) => T::I32,
            A::F32(_) => T::F32,
            A::Bool(_) => T::Bool,
            A::String(_) => T::String,
            A::Array(_) => T::Array,
            A::U64(_) => T::U64,
            A::I64(_) => T::I64,
            A::F64(_) => T::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        use MetadataArray as A;
        match self {
            A::U8(v) => v.len(),
            A::I8(v) => v.len(),
            A::U16(v) => v.len(),
            A::I16(v) => v.len(),
            A::U32(v) => v.len(),
            A::I32(v) => v.len(),
            A::F32(v) => v.len(),
            A::Bool(v) => v.len(),
            A::String(v) => v.len(),
            A::Array(v) => v.len(),
            A::U64(v) => v.len(),
            A::I64(v) => v.len(),
            A::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Levels of array nesting, counting this one (a flat array is 1).
    pub fn depth(&self) -> usize {
        match self {
            MetadataArray::Array(inner) => 1 + inner.iter().map(Self::depth).max().unwrap_or(0),
            _ => 1,
        }
    }

    /// Type name for error messages, e.g. `"array<string>"`.
    pub fn type_name(&self) -> &'static str {
        use MetadataValueType as T;
        match self.element_type() {
            T::U8 => "array<u8>",
            T::I8 => "array<i8>",
            T::U16 => "array<u16>",
            T::I16 => "array<i16>",
            T::U32 => "array<u32>",
            T::I32 => "array<i32>",
            T::F32 => "array<f32>",
            T::Bool => "array<bool>",
            T::String => "array<string>",
            T::Array => "array<array>",
            T::U64 => "array<u64>",
            T::I64 => "array<i64>",
            T::F64 => "array<f64>",
        }
    }

    /// Integer elements widened losslessly; `None` unless the elements are integers.
    fn ints(&self) -> Option<Box<dyn Iterator<Item = i128> + '_>> {
        use MetadataArray as A;
        Some(match self {
            A::U8(v) => Box::new(v.iter().map(|&x| x.into())),
            A::I8(v) => Box::new(v.iter().map(|&x| x.into())),
            A::U16(v) => Box::new(v.iter().map(|&x| x.into())),
            A::I16(v) => Box::new(v.iter().map(|&x| x.into())),
            A::U32(v) => Box::new(v.iter().map(|&x| x.into())),
            A::I32(v) => Box::new(v.iter().map(|&x| x.into())),
            A::U64(v) => Box::new(v.iter().map(|&x| x.into())),
            A::I64(v) => Box::new(v.iter().map(|&x| x.into())),
            _ => return None,
        })
    }
}

macro_rules! impl_from {
    ($($t:ty => $variant:ident / $arr:ident),* $(,)?) => {$(
        impl From<$t> for MetadataValue {
            fn from(v: $t) -> Self {
                MetadataValue::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetadataValue {
            fn from(v: Vec<$t>) -> Self {
                MetadataValue::Array(MetadataArray::$arr(v))
            }
        }
    )*};
}

impl_from!(
    u8 => U8 / U8, i8 => I8 / I8, u16 => U16 / U16, i16 => I16 / I16,
    u32 => U32 / U32, i32 => I32 / I32, f32 => F32 / F32, bool => Bool / Bool,
    String => String / String, u64 => U64 / U64, i64 => I64 / I64, f64 => F64 / F64,
);

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::String(v.to_owned())
    }
}

impl From<MetadataArray> for MetadataValue {
    fn from(v: MetadataArray) -> Self {
        MetadataValue::Array(v)
    }
}

/// Ordered key/value metadata with unique keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

fn wrong_type(key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.type_name(),
    }
}

fn fit<T: TryFrom<i128>>(key: &str, expected: &'static str, value: i128) -> Result<T, GgufError> {
    T::try_from(value).map_err(|_| GgufError::IntOutOfRange {
        key: key.to_owned(),
        expected,
        value,
    })
}

impl Metadata {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file (or insertion) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Adds a key; a key already present is a [`GgufError::DuplicateKey`].
    pub fn insert(&mut self, key: impl Into<String>, value: MetadataValue) -> Result<(), GgufError> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// The raw value, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).and_then(|&i| self.entries.get(i)).map(|(_, v)| v)
    }

    /// The raw value, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    fn int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        let i = v.as_i128().ok_or_else(|| wrong_type(key, expected, v))?;
        fit(key, expected, i)
    }

    /// Any integer value that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.int(key, "u32")
    }

    /// Any integer value that fits in `i32`.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.int(key, "i32")
    }

    /// Any integer value that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.int(key, "u64")
    }

    /// Any integer value (every GGUF integer type fits in `i64` except large `u64`s).
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.int(key, "i64")
    }

    /// Any integer value that fits in `usize` (handy for model dimensions).
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.int(key, "usize")
    }

    /// An `f32`, or an `f64` rounded to `f32`.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            MetadataValue::F32(v) => Ok(*v),
            MetadataValue::F64(v) => Ok(*v as f32),
            other => Err(wrong_type(key, "f32", other)),
        }
    }

    /// An `f64` or `f32`.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.require(key)? {
            MetadataValue::F32(v) => Ok(f64::from(*v)),
            MetadataValue::F64(v) => Ok(*v),
            other => Err(wrong_type(key, "f64", other)),
        }
    }

    /// A `bool`.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            MetadataValue::Bool(v) => Ok(*v),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetadataValue::String(v) => Ok(v),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// An array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray, GgufError> {
        match self.require(key)? {
            MetadataValue::Array(a) => Ok(a),
            other => Err(wrong_type(key, "array", other)),
        }
    }

    /// An array of strings.
    pub fn get_string_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            MetadataValue::Array(MetadataArray::String(v)) => Ok(v),
            other => Err(wrong_type(key, "array<string>", other)),
        }
    }

    /// Borrows an array stored exactly as `T`, else converts any integer
    /// array whose every element fits in `T`.
    fn int_array<T: TryFrom<i128> + Clone>(
        &self,
        key: &str,
        expected: &'static str,
        exact: fn(&MetadataArray) -> Option<&[T]>,
    ) -> Result<Cow<'_, [T]>, GgufError> {
        let v = self.require(key)?;
        let MetadataValue::Array(arr) = v else {
            return Err(wrong_type(key, expected, v));
        };
        if let Some(s) = exact(arr) {
            return Ok(Cow::Borrowed(s));
        }
        let ints = arr.ints().ok_or_else(|| wrong_type(key, expected, v))?;
        ints.map(|i| fit(key, expected, i)).collect::<Result<Vec<T>, _>>().map(Cow::Owned)
    }

    /// An integer array whose elements all fit in `u32`.
    pub fn get_u32_array(&self, key: &str) -> Result<Cow<'_, [u32]>, GgufError> {
        self.int_array(key, "array<u32>", |a| match a {
            MetadataArray::U32(v) => Some(v),
            _ => None,
        })
    }

    /// An integer array whose elements all fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Cow<'_, [i32]>, GgufError> {
        self.int_array(key, "array<i32>", |a| match a {
            MetadataArray::I32(v) => Some(v),
            _ => None,
        })
    }

    /// An integer array whose elements all fit in `u64`.
    pub fn get_u64_array(&self, key: &str) -> Result<Cow<'_, [u64]>, GgufError> {
        self.int_array(key, "array<u64>", |a| match a {
            MetadataArray::U64(v) => Some(v),
            _ => None,
        })
    }

    /// An integer array whose elements all fit in `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Cow<'_, [i64]>, GgufError> {
        self.int_array(key, "array<i64>", |a| match a {
            MetadataArray::I64(v) => Some(v),
            _ => None,
        })
    }

    /// An `f32` array, or an `f64` array rounded to `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Cow<'_, [f32]>, GgufError> {
        match self.require(key)? {
            MetadataValue::Array(MetadataArray::F32(v)) => Ok(Cow::Borrowed(v)),
            MetadataValue::Array(MetadataArray::F64(v)) => {
                Ok(Cow::Owned(v.iter().map(|&x| x as f32).collect()))
            }
            other => Err(wrong_type(key, "array<f32>", other)),
        }
    }
}

/// Turns [`GgufError::MissingKey`] into `Ok(None)` for optional keys:
/// `meta.get_f32("llama.rope.freq_base").optional()?.unwrap_or(10000.0)`.
pub trait OptionalKey<T> {
    /// `Ok(Some(v))` on success, `Ok(None)` if the key is absent, other errors unchanged.
    fn optional(self) -> Result<Option<T>, GgufError>;
}

impl<T> OptionalKey<T> for Result<T, GgufError> {
    fn optional(self) -> Result<Option<T>, GgufError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
