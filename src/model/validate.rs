//! `tokenfab info --validate`: decodes every block of every tensor of a file and reports the
//! first non-finite value of each bad tensor (a NaN or infinite scale in a corrupted block
//! turns into NaN logits far from where it came from). On demand only: it reads the whole file.

use crate::gguf::GgufFile;
use crate::quant::dequantize;
use rayon::prelude::*;

/// A tensor with a non-finite value.
#[derive(Clone, Debug, PartialEq)]
pub struct BadTensor {
    pub tensor: String,
    /// The layer (`blk.N.`), if the tensor belongs to one.
    pub layer: Option<usize>,
    pub row: u64,
    pub column: u64,
    /// The quantization block the value is in (column / block size).
    pub block: u64,
    pub value: f32,
    /// Non-finite values in the tensor.
    pub count: u64,
}

impl std::fmt::Display for BadTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.tensor)?;
        if let Some(l) = self.layer {
            write!(f, " (layer {l})")?;
        }
        write!(
            f,
            ": {} non-finite value(s), the first {} at row {}, column {} (block {})",
            self.count, self.value, self.row, self.column, self.block
        )
    }
}

/// Every tensor of `file` whose decoded values are not all finite, in file order; tensors of
/// a type tokenfab cannot decode are skipped (they are reported when a backend loads them).
pub fn validate(file: &GgufFile) -> Vec<BadTensor> {
    let mut bad: Vec<(usize, BadTensor)> = file
        .tensors()
        .par_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let cols = t.row_len() as usize;
            let row_bytes = t.dtype.row_bytes(cols as u64)? as usize;
            let data = file.tensor_data(t);
            // no whole row, nothing to decode: and a tensor of 0 rows may declare any row
            // length (fuzzing found 1.6e18 columns, which sized the row buffer)
            if row_bytes == 0 || data.len() < row_bytes {
                return None;
            }
            let mut row = vec![0f32; cols];
            let mut first = None;
            let mut count = 0u64;
            for (r, chunk) in data.chunks_exact(row_bytes.max(1)).enumerate() {
                if !dequantize(t.dtype, chunk, &mut row) {
                    return None;
                }
                for (c, &v) in row.iter().enumerate() {
                    if !v.is_finite() {
                        count += 1;
                        first.get_or_insert((r as u64, c as u64, v));
                    }
                }
            }
            let (row, column, value) = first?;
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|s| s.split('.').next())
                .and_then(|n| n.parse().ok());
            Some((
                i,
                BadTensor {
                    tensor: t.name.clone(),
                    layer,
                    row,
                    column,
                    block: column / t.dtype.block_size() as u64,
                    value,
                    count,
                },
            ))
        })
        .collect();
    bad.sort_by_key(|(i, _)| *i);
    bad.into_iter().map(|(_, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzzing, gguf target): a tensor of 0 rows declaring 1.6e18 columns passed
    /// the reader (0 bytes) and made `--validate` allocate a row of that length.
    #[test]
    fn a_tensor_without_rows_is_not_decoded() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions/gguf-validate-zero-rows-huge-cols.gguf");
        let f = GgufFile::open(&path).unwrap();
        let t = f.tensor_info("blk.0.attn_v.weight").unwrap();
        assert_eq!((t.n_rows(), t.n_bytes), (0, 0));
        assert!(t.row_len() > 1 << 60);
        // (other tensors of the fuzzed file may hold non-finite values; this one has none)
        let bad = validate(&f);
        assert!(!bad.iter().any(|b| b.tensor == t.name), "{bad:?}");
    }
}
