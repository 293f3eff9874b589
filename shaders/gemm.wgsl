// Prefill matrix product, tiled: Y[t, row0 + r] = sum_c X[t, c] * W[r, c] for many tokens.
//
// A workgroup of 256 invocations computes a tile of BM = 64 weight rows x BN = 64 tokens
// (../shared/design/GPU.md 3.5, the smaller tile). The K dimension goes by BK = 32 columns:
// invocations 0..63 decode the 32 elements of one weight row each (lib/quant.wgsl's `deq32`,
// any GGUF type) into `As[k][m]`, the other 192 load the tokens' activations into `Bs[k][n]`
// (consecutive invocations take consecutive tokens: conflict-free stores); after a barrier
// every invocation accumulates a 4 x 4 register tile (rows ty + 16i, tokens tx + 16j) from
// two vec4s of workgroup memory per k. Each weight element is decoded once per 64 tokens
// (the matvec kernel decodes it once per 8).
//
// Params P (u32 words), as matmul.wgsl: 0 rows in this part, 1 cols (a multiple of 32),
// 2 n tokens, 3 row0, 4 out_stride, 5 row bytes.
// Dispatch: (ceil(rows / 64), ceil(n / 64), 1).

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
    store(m0 + ty, n0 + tx, c0);
    store(m0 + ty + 16u, n0 + tx, c1);
    store(m0 + ty + 32u, n0 + tx, c2);
    store(m0 + ty + 48u, n0 + tx, c3);
}

// Row m of tokens t, t + 16, t + 32, t + 48 (those inside the part and the batch).
fn store(m: u32, t: u32, v: vec4<f32>) {
    if (m >= P[0]) {
        return;
    }
    let o = P[3] + m;
    for (var j = 0u; j < 4u; j++) {
        let tok = t + 16u * j;
        if (tok < P[2]) {
            Y[tok * P[4] + o] = v[j];
        }
    }
}
