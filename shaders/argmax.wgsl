// Index of the largest of X[off .. off + len] (first one on ties), written to R[0], so a
// greedy token reads back 4 bytes instead of the logits. One workgroup of WG invocations,
// each scanning a strided slice in increasing order, then a tree reduction.
//
// Params P: 0 len, 1 off. Dispatch: (1, 1, 1).

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> R: array<u32>;

var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    let len = P[0];
    var v = -3.4e38;
    var idx = 0xffffffffu;
    // eight loads in flight per step (a 128k-entry vocabulary is 63 steps, not 500
    // dependent loads), taken in increasing index order so the first maximum wins
    for (var i0 = lid; i0 < len; i0 += 8u * WG) {
        var xs: array<f32, 8>;
        for (var k = 0u; k < 8u; k++) {
            xs[k] = X[P[1] + min(i0 + k * WG, len - 1u)];
        }
        for (var k = 0u; k < 8u; k++) {
            let i = i0 + k * WG;
            if (i < len && (xs[k] > v || idx == 0xffffffffu)) {
                v = xs[k];
                idx = i;
            }
        }
    }
    bv[lid] = v;
    bi[lid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = bv[lid + s];
            let oi = bi[lid + s];
            if (oi != 0xffffffffu && (ov > bv[lid] || (ov == bv[lid] && oi < bi[lid]) || bi[lid] == 0xffffffffu)) {
                bv[lid] = ov;
                bi[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        R[0] = bi[0];
    }
}
