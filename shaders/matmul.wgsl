// Quantized matrix x activations: Y[t, row0 + r] = sum_c X[t, c] * W[r, c].
//
// W is one part (a range of rows) of a GGUF weight in its raw block layout, decoded 32
// elements at a time by lib/quant.wgsl. With subgroups, one subgroup computes one row: its
// lanes stride over the row's 32-element chunks, decode each chunk once, dot it with up to NT
// activation rows, and one subgroupAdd finishes the row — no workgroup barrier. Without
// subgroups one invocation computes one row. Decode is the NT = 1 case (a matrix-vector
// product); prefill tiles tokens by NT on z so a chunk is decoded once per NT tokens.
//
// Params P (u32 words): 0 rows in this part, 1 cols, 2 n tokens, 3 row0 (first output row of
// the part), 4 out_stride (total rows of the weight), 5 row bytes.
// Dispatch: ceil(rows / rows per workgroup) folded into (x, y), ceil(n / NT) on z.

const WG: u32 = 64u;
const NT: u32 = 8u;

override TYPE: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>
    /*SG_PARAMS*/
) {
    /*SG_INIT*/
    let rows = P[0];
    let cols = P[1];
    let n = P[2];
    let r = (wid.x + wid.y * nwg.x) * rows_per_wg() + row_slot(lid);
    if (r >= rows) {
        return;
    }
    let lane = row_lane(lid);
    let t0 = wid.z * NT;
    let nt = min(NT, n - t0);
    let rb = r * P[5];
    var acc: array<f32, NT>;
    var w: array<f32, 32>;
    for (var c = lane; c < cols / 32u; c += row_lanes()) {
        deq32(rb, c * 32u, &w);
        for (var t = 0u; t < nt; t++) {
            let xo = (t0 + t) * cols + c * 32u;
            var s = 0.0;
            for (var l = 0u; l < 32u; l++) {
                s += w[l] * X[xo + l];
            }
            acc[t] += s;
        }
    }
    for (var t = 0u; t < nt; t++) {
        let v = row_sum(acc[t]);
        if (lane == 0u) {
            Y[(t0 + t) * P[4] + P[3] + r] = v;
        }
    }
}
