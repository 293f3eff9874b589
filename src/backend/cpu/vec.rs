//! Small f32/f16 vector primitives for the CPU backend's attention and elementwise ops, with
//! an AVX2 path chosen at run time and a portable fallback (the crate is compiled for baseline
//! x86-64, so the compiler alone would only use SSE2).

use half::f16;

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| crate::quant::Isa::detect().avx2())
}

/// Σ a[i] * b[i].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::dot(a, b) };
    }
    portable::dot(a, b)
}

/// Σ k[i] * q[i] with `k` in f16.
pub fn dot_f16(k: &[f16], q: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::dot_f16(k, q) };
    }
    portable::dot_f16(k, q)
}

/// out[i] += a * v[i] with `v` in f16.
pub fn axpy_f16(out: &mut [f32], a: f32, v: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time.
        return unsafe { avx2::axpy_f16(out, a, v) };
    }
    portable::axpy_f16(out, a, v)
}

/// The paths for CPUs without AVX2 (and other architectures).
mod portable {
    use half::f16;

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

    pub fn dot_f16(k: &[f16], q: &[f32]) -> f32 {
        k.iter().zip(q).map(|(a, b)| a.to_f32() * b).sum()
    }

    pub fn axpy_f16(out: &mut [f32], a: f32, v: &[f16]) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += a * x.to_f32();
        }
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

    type Dot = fn(&[f32], &[f32]) -> f32;
    type DotF16 = fn(&[f16], &[f32]) -> f32;
    type Axpy = fn(&mut [f32], f32, &[f16]);

    /// Every path this CPU can run — the portable one always, AVX2 where there is one (and on
    /// x86-64 there must be, or the test says it cannot test it) — against an f64 reference.
    #[test]
    fn simd_and_portable_agree() {
        let mut paths: Vec<(&str, Dot, DotF16, Axpy)> = vec![(
            "portable",
            portable::dot,
            portable::dot_f16,
            portable::axpy_f16,
        )];
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2() {
                // SAFETY: AVX2, FMA and F16C were detected at run time.
                paths.push((
                    "avx2",
                    |a, b| unsafe { avx2::dot(a, b) },
                    |k, q| unsafe { avx2::dot_f16(k, q) },
                    |o, a, v| unsafe { avx2::axpy_f16(o, a, v) },
                ));
            } else {
                assert!(
                    std::env::var_os("TOKENFAB_ALLOW_NO_AVX2").is_some(),
                    "no AVX2 here: its vector path cannot be tested (TOKENFAB_ALLOW_NO_AVX2=1)"
                );
            }
        }
        // lengths around the 8- and 16-wide loops and their tails
        for n in [1usize, 7, 8, 15, 16, 17, 261] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let h: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let want16: f64 = a.iter().zip(&h).map(|(&x, y)| x as f64 * y.to_f64()).sum();
            for (name, dot, dot_f16, axpy) in &paths {
                assert!((dot(&a, &b) as f64 - want).abs() < 1e-4, "{name} dot n={n}");
                assert!(
                    (dot_f16(&h, &a) as f64 - want16).abs() < 1e-4,
                    "{name} dot_f16 n={n}"
                );
                let mut o = a.clone();
                axpy(&mut o, 0.5, &h);
                for i in 0..n {
                    assert!(
                        (o[i] - (a[i] + 0.5 * h[i].to_f32())).abs() < 1e-6,
                        "{name} axpy n={n} i={i}"
                    );
                }
            }
        }
        assert_eq!(
            paths.len(),
            if cfg!(target_arch = "x86_64") { 2 } else { 1 }
        );
    }
}
