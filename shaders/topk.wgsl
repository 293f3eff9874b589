// Top-k candidates for sampling, so a sampled token reads back a few KiB, not the logits.
//
// Each workgroup takes a slice of X[off .. off + len] (at most SLICE elements) into workgroup
// memory and extracts its k largest by k rounds of a workgroup argmax (ties: lower index),
// writing (index, value bits) pairs to O[wg * k ..]; the host merges the workgroups' lists.
// Params P: 0 len, 1 off, 2 k, 3 slice. Dispatch: (ceil(len / slice), 1, 1).

const WG: u32 = 256u;
const SLICE: u32 = 4096u;
const NONE: u32 = 0xffffffffu;
// Marks an element already taken (below any logit a model produces).
const TAKEN: f32 = -3.4028235e38;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<u32>;

var<workgroup> vals: array<f32, SLICE>;
var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let len = P[0];
    let k = P[2];
    let start = wid.x * P[3];
    let n = min(P[3], len - start);
    for (var i = lid; i < n; i += WG) {
        vals[i] = X[P[1] + start + i];
    }
    workgroupBarrier();
    for (var r = 0u; r < k; r++) {
        var v = 0.0;
        var idx = NONE;
        for (var i = lid; i < n; i += WG) {
            let x = vals[i];
            if (x > TAKEN && (idx == NONE || x > v)) {
                v = x;
                idx = i;
            }
        }
        bv[lid] = v;
        bi[lid] = idx;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s) {
                let ov = bv[lid + s];
                let oi = bi[lid + s];
                if (oi != NONE && (bi[lid] == NONE || ov > bv[lid] || (ov == bv[lid] && oi < bi[lid]))) {
                    bv[lid] = ov;
                    bi[lid] = oi;
                }
            }
            workgroupBarrier();
        }
        let best = bi[0];
        let o = (wid.x * k + r) * 2u;
        if (lid == 0u) {
            if (best == NONE) {
                O[o] = NONE;
                O[o + 1u] = 0u;
            } else {
                O[o] = start + best;
                O[o + 1u] = bitcast<u32>(bv[0]);
            }
        }
        if (best != NONE && lid == best % WG) {
            vals[best] = TAKEN;
        }
        workgroupBarrier();
    }
}
