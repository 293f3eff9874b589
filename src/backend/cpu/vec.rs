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

/// `out[r] = Σ k[i] · q[r·hd + i]` for every head `r < out.len()` of a group sharing the key
/// `k` (`hd = k.len()`): the key is converted from f16 once for all of them.
pub fn dot_f16_heads(k: &[f16], q: &[f32], out: &mut [f32]) {
    assert!(q.len() >= out.len() * k.len(), "dot_f16_heads: q too short");
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time; lengths checked above.
        return unsafe { avx2::dot_f16_heads(k, q, out) };
    }
    let hd = k.len();
    for (r, o) in out.iter_mut().enumerate() {
        *o = portable::dot_f16(k, &q[r * hd..(r + 1) * hd]);
    }
}

/// `acc[r·hd + i] += w[r·stride] · v[i]` for every head `r < acc.len() / hd` of a group
/// sharing the value row `v` (`hd = v.len()`).
pub fn axpy_f16_heads(acc: &mut [f32], w: &[f32], stride: usize, v: &[f16]) {
    let (hd, heads) = (v.len(), acc.len() / v.len().max(1));
    assert!(
        heads == 0 || w.len() > (heads - 1) * stride,
        "axpy_f16_heads: w too short"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2, fma and f16c were detected at run time; lengths checked above.
        return unsafe { avx2::axpy_f16_heads(acc, w, stride, v) };
    }
    for r in 0..heads {
        portable::axpy_f16(&mut acc[r * hd..(r + 1) * hd], w[r * stride], v);
    }
}

/// `s[i] = exp(s[i] - m)`; returns `Σ s[i]`. libm's `expf`: a vector exp 1.4 ulp from it was
/// measured ~6 % faster on prefill but changes greedy text on these chaotic models (see
/// `tests/greedy_oracle.rs`), so the one-ulp answers stay.
pub fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    portable::exp_sub_sum(s, m)
}

/// `gate[i] = silu(gate[i]) · up[i]`, `silu(x) = x / (1 + e^-x)` (libm's `expf`, as
/// [`exp_sub_sum`]).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    portable::silu_mul(gate, up)
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

    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    }

    pub fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
        let mut sum = 0f32;
        for x in s.iter_mut() {
            *x = (*x - m).exp();
            sum += *x;
        }
        sum
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

    /// Heads sharing one key, at most this many per pass (two accumulators each).
    const HEADS: usize = 4;

    /// Each head's sum is [`dot_f16`]'s, bit for bit (two 8-lane chains over 16-element
    /// steps, then the tail in scalar), so a score does not depend on how many heads share
    /// the key.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_heads(k: &[f16], q: &[f32], out: &mut [f32]) {
        let hd = k.len();
        let pk = k.as_ptr() as *const u16;
        let mut r0 = 0;
        while r0 < out.len() {
            let nr = (out.len() - r0).min(HEADS);
            let mut acc = [[_mm256_setzero_ps(); 2]; HEADS];
            let mut i = 0;
            unsafe {
                while i + 16 <= hd {
                    let k0 = _mm256_cvtph_ps(_mm_loadu_si128(pk.add(i) as *const __m128i));
                    let k1 = _mm256_cvtph_ps(_mm_loadu_si128(pk.add(i + 8) as *const __m128i));
                    for (r, a) in acc[..nr].iter_mut().enumerate() {
                        let qp = q.as_ptr().add((r0 + r) * hd + i);
                        a[0] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qp), a[0]);
                        a[1] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(qp.add(8)), a[1]);
                    }
                    i += 16;
                }
            }
            for r in 0..nr {
                let qr = &q[(r0 + r) * hd..(r0 + r + 1) * hd];
                let mut s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
                for j in i..hd {
                    s += k[j].to_f32() * qr[j];
                }
                out[r0 + r] = s;
            }
            r0 += nr;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16_heads(acc: &mut [f32], w: &[f32], stride: usize, v: &[f16]) {
        let hd = v.len();
        let heads = acc.len() / hd;
        let pv = v.as_ptr() as *const u16;
        let pa = acc.as_mut_ptr();
        let mut i = 0;
        unsafe {
            while i + 8 <= hd {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(pv.add(i) as *const __m128i));
                for r in 0..heads {
                    let o = pa.add(r * hd + i);
                    let wr = _mm256_set1_ps(*w.get_unchecked(r * stride));
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(wr, x, _mm256_loadu_ps(o)));
                }
                i += 8;
            }
        }
        for r in 0..heads {
            for j in i..hd {
                acc[r * hd + j] += w[r * stride] * v[j].to_f32();
            }
        }
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
        #[allow(unused_mut)] // only x86-64 adds SIMD paths
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

    /// The grouped-head dot and axpy equal one call per head.
    #[test]
    fn head_groups_should_match_one_head_at_a_time() {
        for (hd, heads) in [(64usize, 7usize), (256, 4), (20, 9), (3, 1)] {
            let k: Vec<f16> = (0..hd)
                .map(|i| f16::from_f32((i as f32 * 0.3).sin()))
                .collect();
            let q: Vec<f32> = (0..hd * heads).map(|i| (i as f32 * 0.07).cos()).collect();
            let mut got = vec![0f32; heads];
            dot_f16_heads(&k, &q, &mut got);
            for r in 0..heads {
                // bitwise the one-head kernel's sum
                assert_eq!(
                    got[r],
                    dot_f16(&k, &q[r * hd..(r + 1) * hd]),
                    "dot hd={hd} head {r}"
                );
            }
            let w: Vec<f32> = (0..heads * 3).map(|i| i as f32 * 0.1 - 0.5).collect();
            let mut acc = q.clone();
            axpy_f16_heads(&mut acc, &w, 3, &k);
            for r in 0..heads {
                for i in 0..hd {
                    let want = q[r * hd + i] + w[r * 3] * k[i].to_f32();
                    assert!(
                        (acc[r * hd + i] - want).abs() < 1e-6,
                        "axpy hd={hd} {r} {i}"
                    );
                }
            }
        }
    }
}
