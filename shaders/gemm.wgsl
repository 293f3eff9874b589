// Prefill matrix product, tiled: Y[t, row0 + r] = sum_c X[t, c] * W[r, c] for many tokens.
// Two entry points (../shared/design/GPU.md 3.5): `main`, 64 x 64 tiles in 16 KiB of workgroup
// memory, and `main128`, 128 x 128 tiles in 32 KiB (where the adapter allows it).
//
// `main`: a workgroup of 256 invocations computes a tile of BM = 64 weight rows x BN = 64
// tokens. The K dimension goes by BK = 32 columns:
// invocations 0..63 decode the 32 elements of one weight row each (lib/quant.wgsl's `deq32`,
// any GGUF type) into `As[k][m]`, the other 192 load the tokens' activations into `Bs[k][n]`
// (consecutive invocations take consecutive tokens: conflict-free stores); after a barrier
// every invocation accumulates a 4 x 4 register tile (rows ty + 16i, tokens tx + 16j) from
// two vec4s of workgroup memory per k. Each weight element is decoded once per 64 tokens
// (the matvec kernel decodes it once per 8).
//
// `main128`: 128 weight rows x 128 tokens, BK = 32. Invocations 0..127 decode one row each
// into `A2[k][m]`, 128..255 load 128 tokens x 32 activations into `B2[k][n]`, both as vec4s
// along m and n. Each invocation then accumulates an 8 x 8 register tile — rows 4ty..4ty+3
// and 64+4ty.., tokens 4tx.. and 64+4tx.. — from four vec4 loads of workgroup memory per k
// (64 FMAs per 4 loads; the 64 tile does 16 per 8).
//
// Params P (u32 words), as matmul.wgsl: 0 rows in this part, 1 cols (a multiple of 32),
// 2 n tokens, 3 row0, 4 out_stride, 5 row bytes.
// Dispatch: (ceil(rows / 64), ceil(n / 64), 1), or by 128 for `main128`.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;

override TYPE: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

var<workgroup> As: array<f32, 2048>; // [BK][BM]
var<workgroup> Bs: array<f32, 2048>; // [BK][BN]

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>
) {
    let rows = P[0];
    let cols = P[1];
    let n = P[2];
    let m0 = wid.x * BM;
    let n0 = wid.y * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var w: array<f32, 32>;
    for (var k0 = 0u; k0 < cols; k0 += BK) {
        if (lid < BM) {
            deq32(min(m0 + lid, rows - 1u) * P[5], k0, &w);
            for (var k = 0u; k < BK; k++) {
                As[k * BM + lid] = w[k];
            }
        } else {
            // 64 tokens x 8 vec4s of this k-slice, 192 invocations
            for (var i = lid - BM; i < BN * 8u; i += 256u - BM) {
                let tn = i % BN;
                let kq = (i / BN) * 4u;
                let tok = min(n0 + tn, n - 1u);
                let v = X[(tok * cols + k0 + kq) / 4u];
                Bs[kq * BN + tn] = v.x;
                Bs[(kq + 1u) * BN + tn] = v.y;
                Bs[(kq + 2u) * BN + tn] = v.z;
                Bs[(kq + 3u) * BN + tn] = v.w;
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let a = vec4<f32>(As[k * BM + ty], As[k * BM + ty + 16u], As[k * BM + ty + 32u], As[k * BM + ty + 48u]);
            let b = vec4<f32>(Bs[k * BN + tx], Bs[k * BN + tx + 16u], Bs[k * BN + tx + 32u], Bs[k * BN + tx + 48u]);
            c0 += a.x * b;
            c1 += a.y * b;
            c2 += a.z * b;
            c3 += a.w * b;
        }
        workgroupBarrier();
    }
    store(m0 + ty, n0 + tx, 16u, c0);
    store(m0 + ty + 16u, n0 + tx, 16u, c1);
    store(m0 + ty + 32u, n0 + tx, 16u, c2);
    store(m0 + ty + 48u, n0 + tx, 16u, c3);
}

// Row m of tokens t, t + step, t + 2 step, t + 3 step (those inside the part and the batch).
fn store(m: u32, t: u32, step: u32, v: vec4<f32>) {
    if (m >= P[0]) {
        return;
    }
    let o = P[3] + m;
    for (var j = 0u; j < 4u; j++) {
        let tok = t + step * j;
        if (tok < P[2]) {
            Y[tok * P[4] + o] = v[j];
        }
    }
}

var<workgroup> A2: array<vec4<f32>, 1024>; // [BK][128 / 4]
var<workgroup> B2: array<vec4<f32>, 1024>; // [BK][128 / 4]

@compute @workgroup_size(256)
fn main128(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>
) {
    let rows = P[0];
    let cols = P[1];
    let n = P[2];
    let m0 = wid.x * 128u;
    let n0 = wid.y * 128u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // c{r}{h}: row r of the 8 (0..3: 4ty + r, 4..7: 64 + 4ty + r - 4), tokens 4tx.. (h = 0)
    // or 64 + 4tx.. (h = 1)
    var c00 = vec4<f32>(0.0);
    var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0);
    var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0);
    var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0);
    var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0);
    var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0);
    var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0);
    var c71 = vec4<f32>(0.0);
    var w: array<f32, 32>;
    for (var k0 = 0u; k0 < cols; k0 += BK) {
        if (lid < 128u) {
            deq32(min(m0 + lid, rows - 1u) * P[5], k0, &w);
            for (var k = 0u; k < BK; k++) {
                A2[k * 32u + lid / 4u][lid % 4u] = w[k];
            }
        } else {
            // 128 tokens x 8 vec4s of this k-slice, 128 invocations
            let tn = lid - 128u;
            let tok = min(n0 + tn, n - 1u);
            for (var kq = 0u; kq < BK; kq += 4u) {
                let v = X[(tok * cols + k0 + kq) / 4u];
                B2[kq * 32u + tn / 4u][tn % 4u] = v.x;
                B2[(kq + 1u) * 32u + tn / 4u][tn % 4u] = v.y;
                B2[(kq + 2u) * 32u + tn / 4u][tn % 4u] = v.z;
                B2[(kq + 3u) * 32u + tn / 4u][tn % 4u] = v.w;
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let a0 = A2[k * 32u + ty];
            let a1 = A2[k * 32u + 16u + ty];
            let b0 = B2[k * 32u + tx];
            let b1 = B2[k * 32u + 16u + tx];
            c00 += a0.x * b0;
            c01 += a0.x * b1;
            c10 += a0.y * b0;
            c11 += a0.y * b1;
            c20 += a0.z * b0;
            c21 += a0.z * b1;
            c30 += a0.w * b0;
            c31 += a0.w * b1;
            c40 += a1.x * b0;
            c41 += a1.x * b1;
            c50 += a1.y * b0;
            c51 += a1.y * b1;
            c60 += a1.z * b0;
            c61 += a1.z * b1;
            c70 += a1.w * b0;
            c71 += a1.w * b1;
        }
        workgroupBarrier();
    }
    let r = m0 + 4u * ty;
    let t0 = n0 + 4u * tx;
    let t1 = n0 + 64u + 4u * tx;
    store(r, t0, 1u, c00);
    store(r, t1, 1u, c01);
    store(r + 1u, t0, 1u, c10);
    store(r + 1u, t1, 1u, c11);
    store(r + 2u, t0, 1u, c20);
    store(r + 2u, t1, 1u, c21);
    store(r + 3u, t0, 1u, c30);
    store(r + 3u, t1, 1u, c31);
    store(r + 64u, t0, 1u, c40);
    store(r + 64u, t1, 1u, c41);
    store(r + 65u, t0, 1u, c50);
    store(r + 65u, t1, 1u, c51);
    store(r + 66u, t0, 1u, c60);
    store(r + 66u, t1, 1u, c61);
    store(r + 67u, t0, 1u, c70);
    store(r + 67u, t1, 1u, c71);
}
