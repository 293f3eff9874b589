//! Small f32/f16 vector primitives for the CPU backend's attention and elementwise ops, with
//! an AVX2 path chosen at run time and a portable fallback (the crate is compiled for baseline
//! x86-64, so the compiler alone would only use SSE2).

use half::f16;

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| crate::quant::Isa::detect() == crate::quant::Isa::Avx2)
}

/// Σ a[i] * b[i].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::dot(a, b) };
    }
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// Σ k[i] * q[i] with `k` in f16.
pub fn dot_f16(k: &[f16], q: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::dot_f16(k, q) };
    }
    k.iter().zip(q).map(|(a, b)| a.to_f32() * b).sum()
}

/// out[i] += a * v[i] with `v` in f16.
pub fn axpy_f16(out: &mut [f32], a: f32, v: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::axpy_f16(out, a, v) };
    }
    for (o, x) in out.iter_mut().zip(v) {
        *o += a * x.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(x, 1);
        let s = _mm_add_ps(hi, _mm256_castps256_ps128(x));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        unsafe {
            while i + 16 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                i += 16;
            }
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            s += a[j] * b[j];
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(k: &[f16], q: &[f32]) -> f32 {
        let n = k.len().min(q.len());
        let (pk, pq) = (k.as_ptr() as *const u16, q.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        unsafe {
            while i + 16 <= n {
                let k0 = _mm256_cvtph_ps(_mm_loadu_si128(pk.add(i) as *const __m128i));
                let k1 = _mm256_cvtph_ps(_mm_loadu_si128(pk.add(i + 8) as *const __m128i));
                acc0 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(pq.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(k1, _mm256_loadu_ps(pq.add(i + 8)), acc1);
                i += 16;
            }
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            s += k[j].to_f32() * q[j];
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(out: &mut [f32], a: f32, v: &[f16]) {
        let n = out.len().min(v.len());
        let (po, pv) = (out.as_mut_ptr(), v.as_ptr() as *const u16);
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        unsafe {
            while i + 8 <= n {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(pv.add(i) as *const __m128i));
                let o = _mm256_loadu_ps(po.add(i));
                _mm256_storeu_ps(po.add(i), _mm256_fmadd_ps(va, x, o));
                i += 8;
            }
        }
        for j in i..n {
            out[j] += a * v[j].to_f32();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_agree() {
        let a: Vec<f32> = (0..261).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..261).map(|i| (i as f32 * 0.11).cos()).collect();
        let h: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-4);
        let want16: f32 = a.iter().zip(&h).map(|(x, y)| x * y.to_f32()).sum();
        assert!((dot_f16(&h, &a) - want16).abs() < 1e-4);
        let mut o = a.clone();
        axpy_f16(&mut o, 0.5, &h);
        for i in 0..a.len() {
            assert!((o[i] - (a[i] + 0.5 * h[i].to_f32())).abs() < 1e-6);
        }
    }
}
