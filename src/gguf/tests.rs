//! Reader/writer tests on fixtures built here: round trips of every value type, and one
//! malformed file per failure mode, each of which must give a typed error, never a panic.

use super::*;

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-5)),
        ("t.u16", Value::U16(65000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1.5e-6)),
        ("t.bool", Value::Bool(true)),
        ("t.string", Value::String("héllo ▁wörld".into())),
        ("t.u64", Value::U64(u64::MAX - 1)),
        ("t.i64", Value::I64(i64::MIN + 1)),
        ("t.f64", Value::F64(-2.25)),
        (
            "t.arr_str",
            Value::Array(Array::String(["a", "", "<0x0A>"].into_iter().collect())),
        ),
        ("t.arr_f32", Value::Array(Array::F32(vec![0.5, -1.0]))),
        ("t.arr_empty", Value::Array(Array::I32(vec![]))),
        ("t.arr_u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("t.arr_bool", Value::Array(Array::Bool(vec![true, false]))),
    ]
}

fn fixture() -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in all_values() {
        w.set(k, v);
    }
    let a: Vec<u8> = (0..4 * 8 * 4).map(|i| i as u8).collect();
    w.add_tensor("a", GgmlType::F32, &[8, 4], a).unwrap();
    w.add_tensor("b", GgmlType::Q8_0, &[64, 2], vec![7u8; 4 * 34])
        .unwrap();
    w.add_tensor("c", GgmlType::F16, &[3], vec![1u8; 6])
        .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn round_trips_every_value_type_and_tensor() {
    let f = GgufFile::from_bytes("<fixture>", fixture()).unwrap();
    assert_eq!(f.version(), 3);
    for (k, v) in all_values() {
        assert_eq!(f.metadata().get(k), Some(&v), "{k}");
    }
    let a = f.require_tensor("a").unwrap();
    assert_eq!(
        (a.dtype, a.dims.clone(), a.n_bytes),
        (GgmlType::F32, vec![8, 4], 128)
    );
    assert_eq!(f.tensor_data(a)[5], 5);
    let b = f.require_tensor("b").unwrap();
    assert_eq!(b.n_bytes, 136);
    assert_eq!(f.tensor_range(b).start % 32, 0, "data is aligned");
    assert!(f.tensor_data(b).iter().all(|&x| x == 7));
    let c = f.require_tensor("c").unwrap();
    assert_eq!(f.tensor_data(c), &[1u8; 6]);
    let e = f.require_tensor("zzz").unwrap_err().to_string();
    assert!(e.contains("<fixture>") && e.contains("zzz"), "{e}");
}

#[test]
fn honours_general_alignment() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(64));
    w.add_tensor("x", GgmlType::F32, &[3], vec![0; 12]).unwrap();
    w.add_tensor("y", GgmlType::F32, &[3], vec![1; 12]).unwrap();
    let f = GgufFile::from_bytes("<m>", w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 64);
    let y = f.require_tensor("y").unwrap();
    assert_eq!(y.offset, 64);
    assert_eq!(f.tensor_range(y).start % 64, 0);
    assert_eq!(f.tensor_data(y), &[1u8; 12]);
}

#[test]
fn opens_from_disk_through_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, fixture()).unwrap();
    let f = GgufFile::open(&p).unwrap();
    assert!(f.is_mapped());
    assert_eq!(f.tensors().len(), 3);
    let e = GgufFile::open(dir.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(e.kind, GgufErrorKind::Io(_)));
    assert!(e.to_string().contains("missing.gguf"));
}

/// A mapped file reports how it sits in the page cache once read (Linux: from smaps), and
/// evicting its pages changes nothing it reads.
#[cfg(target_os = "linux")]
#[test]
fn a_mapped_file_reports_its_residency_and_survives_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, fixture()).unwrap();
    page_cache::evict(&p).unwrap();
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(
        f.bytes(),
        &fixture()[..],
        "the bytes read back after eviction"
    );
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let Some(r) = f.residency() else {
        // only a kernel that does not report 2 MiB file mappings may say nothing
        assert!(
            !smaps.contains("FilePmdMapped"),
            "no residency for the mapping"
        );
        return;
    };
    // the whole (one-page) file was just read; a 4 KiB file is never mapped 2 MiB at once
    assert_eq!((r.resident, r.huge), (4096, 0), "{r:?}");
    assert_eq!(r.huge_pct(), Some(0.0));
    assert!(GgufFile::from_bytes("mem", fixture())
        .unwrap()
        .residency()
        .is_none());
    assert!(page_cache::evict(&dir.path().join("missing.gguf")).is_err());
}

/// Raw header builder for malformed files the writer refuses to make.
struct Raw(Vec<u8>);
impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    fn data(mut self, n: usize) -> Self {
        let pad = self.0.len().div_ceil(32) * 32;
        self.0.resize(pad + n, 0);
        self
    }
    fn err(self) -> GgufErrorKind {
        GgufFile::from_bytes("<bad>", self.0).unwrap_err().kind
    }
}

#[test]
fn malformed_files_give_typed_errors() {
    use GgufErrorKind as K;
    // truncated header: every prefix of a valid file fails cleanly
    let good = fixture();
    let header_len = 24;
    for cut in 0..header_len {
        let e = GgufFile::from_bytes("<cut>", good[..cut].to_vec()).unwrap_err();
        assert!(matches!(e.kind, K::Truncated { .. }), "cut {cut}: {e}");
    }
    let parsed = GgufFile::from_bytes("<ok>", good.clone()).unwrap();
    let data_end = parsed
        .tensors()
        .iter()
        .map(|t| parsed.tensor_range(t).end)
        .max()
        .unwrap();
    for cut in (header_len..data_end).step_by(7) {
        assert!(
            GgufFile::from_bytes("<cut>", good[..cut].to_vec()).is_err(),
            "cut {cut}"
        );
    }
    // bad magic
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        GgufFile::from_bytes("<m>", bad).unwrap_err().kind,
        K::BadMagic(_)
    ));
    // version 1 and big-endian-looking versions
    assert!(matches!(Raw::new(1, 0, 0).err(), K::UnsupportedVersion(1)));
    assert!(matches!(
        Raw::new(3 << 24, 0, 0).err(),
        K::UnsupportedVersion(_)
    ));
    // huge counts are rejected before allocating
    assert!(matches!(
        Raw::new(3, u64::MAX, 0).err(),
        K::ImpossibleCount { what: "tensor", .. }
    ));
    assert!(matches!(
        Raw::new(3, 0, 1 << 40).err(),
        K::ImpossibleCount {
            what: "metadata",
            ..
        }
    ));
    let huge_array = Raw::new(3, 0, 1).str("k").u32(9).u32(4).u64(1 << 50);
    assert!(matches!(huge_array.err(), K::ImpossibleCount { .. }));
    let huge_string = Raw::new(3, 0, 1).str("k").u32(8).u64(u64::MAX);
    assert!(matches!(huge_string.err(), K::Truncated { .. }));
    // unknown value type, nested arrays, bad UTF-8, duplicate keys, bad alignment
    assert!(matches!(
        Raw::new(3, 0, 1).str("k").u32(99).err(),
        K::UnknownValueType { id: 99, .. }
    ));
    assert!(matches!(
        Raw::new(3, 0, 1).str("k").u32(9).u32(9).u64(0).err(),
        K::NestedArray { .. }
    ));
    let mut bad_utf8 = Raw::new(3, 0, 1).str("k").u32(8).u64(2);
    bad_utf8.0.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(bad_utf8.err(), K::InvalidUtf8 { .. }));
    let dup = Raw::new(3, 0, 2)
        .str("k")
        .u32(4)
        .u32(1)
        .str("k")
        .u32(4)
        .u32(2);
    assert!(matches!(dup.err(), K::DuplicateKey(k) if k == "k"));
    let align = Raw::new(3, 0, 1).str("general.alignment").u32(4).u32(24);
    assert!(matches!(align.err(), K::BadAlignment(24)));
    // tensor past end of file
    let past = Raw::new(3, 1, 0).tensor("w", &[8], 0, 0).data(16);
    match past.err() {
        K::TensorOutOfBounds { name, .. } => assert_eq!(name, "w"),
        e => panic!("{e}"),
    }
    // offset so large that start + size overflows
    let overflow = Raw::new(3, 1, 0)
        .tensor("w", &[8], 0, u64::MAX - 31)
        .data(64);
    assert!(matches!(overflow.err(), K::TensorOutOfBounds { .. }));
    // unknown dtype
    assert!(matches!(
        Raw::new(3, 1, 0).tensor("w", &[8], 77, 0).data(64).err(),
        K::UnknownTensorType { id: 77, .. }
    ));
    // misaligned offset
    assert!(matches!(
        Raw::new(3, 1, 0).tensor("w", &[8], 0, 4).data(64).err(),
        K::Misaligned { offset: 4, .. }
    ));
    // duplicate tensor names
    let dup_t = Raw::new(3, 2, 0)
        .tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .data(64);
    assert!(matches!(dup_t.err(), K::DuplicateTensor(n) if n == "w"));
    // overlapping tensors
    let overlap = Raw::new(3, 2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(96);
    assert!(matches!(overlap.err(), K::Overlap { .. }));
    // too many dims, shape not a multiple of the block size, element count overflow
    assert!(matches!(
        Raw::new(3, 1, 0)
            .tensor("w", &[1, 1, 1, 1, 1], 0, 0)
            .data(64)
            .err(),
        K::TooManyDims { n_dims: 5, .. }
    ));
    assert!(matches!(
        Raw::new(3, 1, 0).tensor("w", &[33], 8, 0).data(64).err(),
        K::BadShape { .. }
    ));
    assert!(matches!(
        Raw::new(3, 1, 0)
            .tensor("w", &[1 << 40, 1 << 40], 0, 0)
            .data(64)
            .err(),
        K::BadShape { .. }
    ));
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let mut w = GgufWriter::new();
    w.add_tensor("x", GgmlType::F32, &[4], vec![0; 16]).unwrap();
    assert!(w.add_tensor("x", GgmlType::F32, &[4], vec![0; 16]).is_err());
    assert!(w.add_tensor("y", GgmlType::F32, &[4], vec![0; 15]).is_err());
    assert!(w
        .add_tensor("z", GgmlType::Q4_K, &[100], vec![0; 144])
        .is_err());
}

/// A mutation smoke test (cargo-fuzz style, seeded, on stable): 200 000 random corruptions of
/// the fixture — byte flips, extreme integers written over counts, lengths and offsets,
/// truncations, duplicated spans — each opens to a typed error or to a file whose every
/// metadata value, tensor and tensor byte range can be read and decoded. A panic fails it.
#[test]
fn mutated_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let base = fixture();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7f_0b);
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..200_000 {
        let mut b = base.clone();
        for _ in 0..rng.random_range(1..4) {
            let n = b.len().max(1);
            match rng.random_range(0..5) {
                0 => {
                    let i = rng.random_range(0..n);
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => {
                    let i = rng.random_range(0..n) & !7;
                    let v: u64 =
                        [0, 1, u64::MAX, 1 << 40, u32::MAX as u64, 255][rng.random_range(0..6)];
                    for (j, x) in v.to_le_bytes().iter().enumerate() {
                        if let Some(y) = b.get_mut(i + j) {
                            *y = *x;
                        }
                    }
                }
                2 => b.truncate(rng.random_range(0..n)),
                3 => {
                    let i = rng.random_range(0..n);
                    let j = (i + rng.random_range(0..64)).min(b.len());
                    let span = b[i..j].to_vec();
                    let at = rng.random_range(0..=b.len());
                    b.splice(at..at, span);
                }
                _ => {
                    let i = rng.random_range(0..n);
                    if let Some(x) = b.get_mut(i) {
                        *x = rng.random();
                    }
                }
            }
        }
        match GgufFile::from_bytes("<mutated>", b) {
            Err(_) => refused += 1,
            Ok(f) => {
                opened += 1;
                for (k, v) in f.metadata().iter() {
                    let _ = format!("{k} = {v}");
                }
                for t in f.tensors() {
                    let data = f.tensor_data(t);
                    assert_eq!(data.len() as u64, t.n_bytes);
                    if t.n_elements() <= 1 << 16 {
                        let mut out = vec![0f32; t.n_elements() as usize];
                        let _ = crate::quant::dequantize(t.dtype, data, &mut out);
                    }
                }
                let _ = crate::model::Config::from_gguf(&f);
                let _ = crate::tokenizer::Tokenizer::from_metadata(f.metadata());
            }
        }
    }
    // the mutations reach both sides
    assert!(
        opened > 1000 && refused > 1000,
        "{opened} opened, {refused} refused"
    );
}
