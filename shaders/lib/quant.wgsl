// GGUF block decoding for WGSL kernels that read raw weights.
//
// Included (prepended) by kernels that declare `W: array<u32>` (the raw GGUF bytes of one
// weight part, little-endian, rows packed back to back) and `override TYPE: u32` (the ggml
// type id). Blocks are byte-packed and not 4-byte aligned (a Q4_0 block is 18 bytes), so all
// reads go through byte-offset helpers (quants four at a time through `u32at`, which joins two
// aligned words where a block leaves them unaligned). `deq32(row_byte, e0, &w)` decodes elements
// `e0..e0 + 32` of the row that starts at byte `row_byte`; every supported type has a
// 32-element structure (k-quant super-blocks are 8 such chunks). Layouts follow ggml-common.h;
// tests/wgpu_kernels.rs checks every type against the CPU dequantizer.

fn u8at(b: u32) -> u32 {
    return (W[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

fn u16at(b: u32) -> u32 {
    if ((b & 3u) < 3u) {
        return (W[b >> 2u] >> ((b & 3u) * 8u)) & 0xffffu;
    }
    return u8at(b) | (u8at(b + 1u) << 8u);
}

fn u32at(b: u32) -> u32 {
    let s = b & 3u;
    if (s == 0u) {
        return W[b >> 2u];
    }
    return (W[b >> 2u] >> (s * 8u)) | (W[(b >> 2u) + 1u] << (32u - s * 8u));
}

fn f16at(b: u32) -> f32 {
    return unpack2x16float(u16at(b)).x;
}

fn i8of(v: u32) -> i32 {
    return bitcast<i32>(v << 24u) >> 24u;
}

// Scale and min of sub-block j (0..8) of a Q4_K / Q5_K super-block, 6 bits each.
fn k4_scale_min(sb: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(u8at(sb + j) & 63u), f32(u8at(sb + j + 4u) & 63u));
    }
    let sc = (u8at(sb + j + 4u) & 15u) | ((u8at(sb + j - 4u) >> 6u) << 4u);
    let m = (u8at(sb + j + 4u) >> 4u) | ((u8at(sb + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Signed 6-bit scale i (0..16) of a Q3_K super-block (12 packed bytes at sb).
fn q3k_scale(sb: u32, i: u32) -> f32 {
    var lo: u32;
    if (i < 8u) {
        lo = u8at(sb + i) & 15u;
    } else {
        lo = u8at(sb + i - 8u) >> 4u;
    }
    let hi = (u8at(sb + 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn deq32(rb: u32, e0: u32, w: ptr<function, array<f32, 32>>) {
    switch TYPE {
        case 0u { // F32
            for (var l = 0u; l < 32u; l++) { (*w)[l] = bitcast<f32>(u32at(rb + (e0 + l) * 4u)); }
        }
        case 1u { // F16
            for (var l = 0u; l < 32u; l++) { (*w)[l] = f16at(rb + (e0 + l) * 2u); }
        }
        case 30u { // BF16
            for (var l = 0u; l < 32u; l++) { (*w)[l] = bitcast<f32>(u16at(rb + (e0 + l) * 2u) << 16u); }
        }
        case 2u { // Q4_0: d, qs[16]
            let base = rb + (e0 / 32u) * 18u;
            let d = f16at(base);
            for (var k = 0u; k < 4u; k++) {
                let q4 = u32at(base + 2u + 4u * k);
                for (var j = 0u; j < 4u; j++) {
                    let q = (q4 >> (8u * j)) & 0xffu;
                    (*w)[4u * k + j] = d * (f32(q & 15u) - 8.0);
                    (*w)[4u * k + j + 16u] = d * (f32(q >> 4u) - 8.0);
                }
            }
        }
        case 3u { // Q4_1: d, m, qs[16]
            let base = rb + (e0 / 32u) * 20u;
            let d = f16at(base);
            let m = f16at(base + 2u);
            for (var l = 0u; l < 16u; l++) {
                let q = u8at(base + 4u + l);
                (*w)[l] = d * f32(q & 15u) + m;
                (*w)[l + 16u] = d * f32(q >> 4u) + m;
            }
        }
        case 6u { // Q5_0: d, qh[4], qs[16]
            let base = rb + (e0 / 32u) * 22u;
            let d = f16at(base);
            let qh = u32at(base + 2u);
            for (var k = 0u; k < 4u; k++) {
                let q4 = u32at(base + 6u + 4u * k);
                for (var j = 0u; j < 4u; j++) {
                    let l = 4u * k + j;
                    let q = (q4 >> (8u * j)) & 0xffu;
                    let lo = (q & 15u) | (((qh >> l) & 1u) << 4u);
                    let hi = (q >> 4u) | (((qh >> (l + 16u)) & 1u) << 4u);
                    (*w)[l] = d * (f32(lo) - 16.0);
                    (*w)[l + 16u] = d * (f32(hi) - 16.0);
                }
            }
        }
        case 7u { // Q5_1: d, m, qh[4], qs[16]
            let base = rb + (e0 / 32u) * 24u;
            let d = f16at(base);
            let m = f16at(base + 2u);
            let qh = u32at(base + 4u);
            for (var l = 0u; l < 16u; l++) {
                let q = u8at(base + 8u + l);
                let lo = (q & 15u) | (((qh >> l) & 1u) << 4u);
                let hi = (q >> 4u) | (((qh >> (l + 16u)) & 1u) << 4u);
                (*w)[l] = d * f32(lo) + m;
                (*w)[l + 16u] = d * f32(hi) + m;
            }
        }
        case 8u { // Q8_0: d, qs[32]
            let base = rb + (e0 / 32u) * 34u;
            let d = f16at(base);
            // one (possibly unaligned) word per four quants instead of a load per byte
            for (var k = 0u; k < 8u; k++) {
                let q4 = u32at(base + 2u + 4u * k);
                for (var j = 0u; j < 4u; j++) {
                    (*w)[4u * k + j] = d * f32(bitcast<i32>(q4 << (24u - 8u * j)) >> 24u);
                }
            }
        }
        case 10u { // Q2_K: scales[16], qs[64], d, dmin
            let base = rb + (e0 / 256u) * 84u;
            let s = (e0 % 256u) / 32u;
            let h = s / 4u;
            let jj = s % 4u;
            let d = f16at(base + 80u);
            let dmin = f16at(base + 82u);
            for (var l = 0u; l < 32u; l++) {
                let sc = u8at(base + h * 8u + jj * 2u + l / 16u);
                let q = (u8at(base + 16u + h * 32u + l) >> (2u * jj)) & 3u;
                (*w)[l] = d * f32(sc & 15u) * f32(q) - dmin * f32(sc >> 4u);
            }
        }
        case 11u { // Q3_K: hmask[32], qs[64], scales[12], d
            let base = rb + (e0 / 256u) * 110u;
            let s = (e0 % 256u) / 32u;
            let h = s / 4u;
            let jj = s % 4u;
            let d = f16at(base + 108u);
            let m = 1u << (h * 4u + jj);
            for (var l = 0u; l < 32u; l++) {
                let sc = q3k_scale(base + 96u, h * 8u + jj * 2u + l / 16u);
                let q = (u8at(base + 32u + h * 32u + l) >> (2u * jj)) & 3u;
                var v = f32(q);
                if ((u8at(base + l) & m) == 0u) {
                    v -= 4.0;
                }
                (*w)[l] = d * sc * v;
            }
        }
        case 12u { // Q4_K: d, dmin, scales[12], qs[128]; 144-byte blocks stay word-aligned
            let base = rb + (e0 / 256u) * 144u;
            let s = (e0 % 256u) / 32u;
            let dm = unpack2x16float(W[base >> 2u]);
            let sm = k4_scale_min(base + 4u, s);
            let a = dm.x * sm.x;
            let b = dm.y * sm.y;
            let sh = (s & 1u) * 4u;
            let q0 = ((base + 16u) >> 2u) + (s / 2u) * 8u;
            for (var k = 0u; k < 8u; k++) {
                let q = W[q0 + k] >> sh;
                (*w)[4u * k] = a * f32(q & 15u) - b;
                (*w)[4u * k + 1u] = a * f32((q >> 8u) & 15u) - b;
                (*w)[4u * k + 2u] = a * f32((q >> 16u) & 15u) - b;
                (*w)[4u * k + 3u] = a * f32((q >> 24u) & 15u) - b;
            }
        }
        case 13u { // Q5_K: d, dmin, scales[12], qh[32], qs[128]
            let base = rb + (e0 / 256u) * 176u;
            let s = (e0 % 256u) / 32u;
            let d = f16at(base);
            let dmin = f16at(base + 2u);
            let sm = k4_scale_min(base + 4u, s);
            let a = d * sm.x;
            let b = dmin * sm.y;
            let sh = (s & 1u) * 4u;
            for (var l = 0u; l < 32u; l++) {
                let lo = (u8at(base + 48u + (s / 2u) * 32u + l) >> sh) & 15u;
                let hi = (u8at(base + 16u + l) >> s) & 1u;
                (*w)[l] = a * f32(lo | (hi << 4u)) - b;
            }
        }
        case 14u { // Q6_K: ql[128], qh[64], scales[16], d
            let base = rb + (e0 / 256u) * 210u;
            let s = (e0 % 256u) / 32u;
            let h = s / 4u;
            let k = s % 4u;
            let d = f16at(base + 208u);
            let sh = (k / 2u) * 4u;
            for (var l = 0u; l < 32u; l++) {
                let lo = (u8at(base + h * 64u + l + (k & 1u) * 32u) >> sh) & 15u;
                let hi = (u8at(base + 128u + h * 32u + l) >> (2u * k)) & 3u;
                let sc = f32(i8of(u8at(base + 192u + h * 8u + l / 16u + 2u * k)));
                (*w)[l] = d * sc * f32(i32(lo | (hi << 4u)) - 32);
            }
        }
        default {
            for (var l = 0u; l < 32u; l++) { (*w)[l] = 0.0; }
        }
    }
}
