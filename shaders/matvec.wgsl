// Decode matrix-vector product on Q4_K weights: Y[row0 + r] = sum_c X[c] * W[r, c].
//
// Reads every weight byte once, 16 bytes at a time, coalesced (../shared/design/GPU.md 3.3):
// a workgroup of WG = 128 invocations computes R = 4 rows. Eight consecutive lanes share one
// 256-element super-block (144 bytes: d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
// nibbles): lane t reads the `vec4<u32>` of nibble bytes 16t..16t+15, so the eight lanes read
// 128 contiguous bytes and the 16-byte header is one broadcast load. Lane t's bytes hold
// elements 64j + 16h + 0..15 (low nibbles, sub-block 2j) and 64j + 32 + 16h + 0..15 (high
// nibbles, sub-block 2j + 1), j = t / 2, h = t % 2:
//
//   qs byte 32j + 16h + p  =  [ hi: elem 64j+32+16h+p | lo: elem 64j+16h+p ]
//
// The lane's 32 activations are loaded once (8 `vec4<f32>`, bound read-only) and reused for
// the R rows; their sums per sub-block are taken once. Nibbles become floats without an
// int-to-float conversion (2^23 | v reinterpreted is 2^23 + v), are dotted with the
// activations per sub-block, and the block's scales are applied once per sub-block:
// d * (sc_a * S_a + sc_b * S_b) - dmin * (m_a * X_a + m_b * X_b). The 16 super-blocks a
// workgroup covers per step are summed by `rows_sum` (lib/rows_*.wgsl), independent of the
// subgroup size. Rows past the part are clamped for loads and skipped for stores, so every
// invocation reaches the barrier.
//
//
// Epilogues (override EPI) fuse the op that follows a projection, saving its dispatch:
//   0 store:    Y[i] = (W x)[i]
//   1 add:      Y[i] += (W x)[i]                       (output projections into the residual)
//   2 SiLU GLU: Y[i] = silu((W x)[i]) * (W2 x)[i]      (gate and up of a feed-forward: the
//   3 GELU GLU: Y[i] = gelu((W x)[i]) * (W2 x)[i]       workgroup does R rows of both)
//   4 QKV:      Y = W x, Y2 = W2 x, Y3 = W3 x           (the query, key and value projections
//               in one dispatch: rows 0..P[0] are W's, then P[6] of W2, then P[6] of W3; each
//               workgroup's R rows lie in one matrix, so the choice is uniform)
// Unused W2/W3 are bound to W's buffer, unused Y2/Y3 to a dummy.
//
// With override NORM = 1 the input is RMS-normed first, X * G / sqrt(mean(X^2) + eps) (the
// norm before a block's first projections, saving its dispatch): every workgroup sums the
// squares of the whole row itself (16 KiB read from cache for a 4096-wide model) and scales
// the activations as it loads them. Unused G is bound to X.
//
// Params P (u32 words), as matmul.wgsl: 0 rows in this part (QKV: of W), 1 cols, 2 n tokens
// (1), 3 row0 (first output row of the part), 4 out_stride, 5 row bytes (a multiple of 144),
// 6 rows of W2 and W3 (QKV), 7 eps of the norm (f32 bits; NORM).
// Dispatch: ceil(rows / R) workgroups folded into (x, y) (QKV: (P[0] + 2 P[6]) / R).

const WG: u32 = 128u;
const R: u32 = 4u;

override EPI: u32 = 0u;
override NORM: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> W: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> W2: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> W3: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> Y: array<f32>;
@group(0) @binding(7) var<storage, read_write> Y2: array<f32>;
@group(0) @binding(8) var<storage, read_write> Y3: array<f32>;

// 1 / rms of the input row (NORM).
var<private> inv_rms: f32;

// Activations i..i + 3, RMS-normed with NORM.
fn xin(i: u32) -> vec4<f32> {
    if (NORM == 1u) {
        return X[i] * G[i] * inv_rms;
    }
    return X[i];
}

// Word i of matrix m (0: W, 1: W2, 2: W3).
fn wload(m: u32, i: u32) -> vec4<u32> {
    switch m {
        case 1u {
            return W2[i];
        }
        case 2u {
            return W3[i];
        }
        default {
            return W[i];
        }
    }
}

// The tanh approximation, as elementwise.wgsl (and the CPU backend).
fn gelu(x: f32) -> f32 {
    let u = clamp(0.7978846 * x * (1.0 + 0.044715 * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

// Four nibbles (the bytes of `w` shifted by `sh`) as floats, without int-to-float conversion.
fn nib4(w: u32, sh: u32) -> vec4<f32> {
    let v = (vec4<u32>(w) >> vec4<u32>(sh, sh + 8u, sh + 16u, sh + 24u)) & vec4<u32>(15u);
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0);
}

// Byte i (0..12) of the scales, held in header words y, z, w.
fn sbyte(h: vec4<u32>, i: u32) -> u32 {
    return (h[1u + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xffu;
}

// 6-bit scale and min of sub-block s (0..8), as floats.
fn scale_min(h: vec4<u32>, s: u32) -> vec2<f32> {
    let lo = vec2<u32>(sbyte(h, s) & 63u, sbyte(h, s + 4u) & 63u);
    let s4 = s & 3u;
    let a = sbyte(h, s4 + 8u);
    let hi = vec2<u32>(
        (a & 15u) | ((sbyte(h, s4) >> 6u) << 4u),
        (a >> 4u) | ((sbyte(h, s4 + 4u) >> 6u) << 4u),
    );
    return vec2<f32>(select(hi, lo, s < 4u));
}

// The 32 activations a lane dots per super-block, and their sums per sub-block.
struct Act {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    b0: vec4<f32>,
    b1: vec4<f32>,
    b2: vec4<f32>,
    b3: vec4<f32>,
    sum_a: f32,
    sum_b: f32,
}

// One lane's part of one row: nibble words q and block header h, sub-blocks 2j and 2j + 1.
fn row_dot(q: vec4<u32>, h: vec4<u32>, j: u32, x: Act) -> f32 {
    let dm = unpack2x16float(h.x);
    let a = scale_min(h, 2u * j);
    let b = scale_min(h, 2u * j + 1u);
    let s_a = dot(nib4(q.x, 0u), x.a0) + dot(nib4(q.y, 0u), x.a1)
        + dot(nib4(q.z, 0u), x.a2) + dot(nib4(q.w, 0u), x.a3);
    let s_b = dot(nib4(q.x, 4u), x.b0) + dot(nib4(q.y, 4u), x.b1)
        + dot(nib4(q.z, 4u), x.b2) + dot(nib4(q.w, 4u), x.b3);
    return dm.x * (a.x * s_a + b.x * s_b) - dm.y * (a.y * x.sum_a + b.y * x.sum_b);
}

@compute @workgroup_size(128)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>
    /*SG_PARAMS*/
) {
    /*SG_INIT*/
    let g0 = (wid.x + wid.y * nwg.x) * R;
    // the matrix (QKV: by the workgroup's rows) and the first of its rows
    var m = 0u;
    var rows = P[0];
    var r0 = g0;
    if (EPI == 4u && g0 >= P[0]) {
        rows = P[6];
        m = select(1u, 2u, g0 >= P[0] + P[6]);
        r0 = g0 - P[0] - select(0u, P[6], m == 2u);
    }
    let nsb = P[1] / 256u;
    let stride = P[5] / 16u;
    if (NORM == 1u) {
        var ss = vec4<f32>(0.0);
        for (var i = lid; i < P[1] / 4u; i += WG) {
            let v = X[i];
            ss += v * v;
        }
        let tot = rows_sum(ss, vec4<f32>(0.0), lid).a;
        inv_rms = 1.0 / sqrt((tot.x + tot.y + tot.z + tot.w) / f32(P[1]) + bitcast<f32>(P[7]));
        // rows_sum's partials are read above and written again below
        workgroupBarrier();
    }
    let t = lid & 7u;
    let j = t >> 1u;
    let xoff = 16u * j + 4u * (t & 1u);
    // first word of each of the R rows (clamped into the part)
    let hb = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(rows - 1u)) * stride;
    let qb = hb + vec4<u32>(1u + t);
    var acc = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    for (var sb = lid >> 3u; sb < nsb; sb += WG / 8u) {
        let xo = sb * 64u + xoff;
        var x: Act;
        x.a0 = xin(xo);
        x.a1 = xin(xo + 1u);
        x.a2 = xin(xo + 2u);
        x.a3 = xin(xo + 3u);
        x.b0 = xin(xo + 8u);
        x.b1 = xin(xo + 9u);
        x.b2 = xin(xo + 10u);
        x.b3 = xin(xo + 11u);
        let one = vec4<f32>(1.0);
        x.sum_a = dot(x.a0 + x.a1 + x.a2 + x.a3, one);
        x.sum_b = dot(x.b0 + x.b1 + x.b2 + x.b3, one);
        let o = sb * 9u;
        acc.x += row_dot(wload(m, qb.x + o), wload(m, hb.x + o), j, x);
        acc.y += row_dot(wload(m, qb.y + o), wload(m, hb.y + o), j, x);
        acc.z += row_dot(wload(m, qb.z + o), wload(m, hb.z + o), j, x);
        acc.w += row_dot(wload(m, qb.w + o), wload(m, hb.w + o), j, x);
        if (EPI == 2u || EPI == 3u) {
            acc2.x += row_dot(W2[qb.x + o], W2[hb.x + o], j, x);
            acc2.y += row_dot(W2[qb.y + o], W2[hb.y + o], j, x);
            acc2.z += row_dot(W2[qb.z + o], W2[hb.z + o], j, x);
            acc2.w += row_dot(W2[qb.w + o], W2[hb.w + o], j, x);
        }
    }
    let s = rows_sum(acc, acc2, lid);
    if (lid < R && r0 + lid < rows) {
        let i = P[3] + r0 + lid;
        let v = s.a[lid];
        switch EPI {
            case 1u {
                Y[i] += v;
            }
            case 2u {
                Y[i] = v / (1.0 + exp(-v)) * s.b[lid];
            }
            case 3u {
                Y[i] = gelu(v) * s.b[lid];
            }
            case 4u {
                switch m {
                    case 1u {
                        Y2[r0 + lid] = v;
                    }
                    case 2u {
                        Y3[r0 + lid] = v;
                    }
                    default {
                        Y[r0 + lid] = v;
                    }
                }
            }
            default {
                Y[i] = v;
            }
        }
    }
}
