// Index of the largest of X[off .. off + len] (first one on ties), written to R[r0], so a
// greedy token reads back 4 bytes instead of the logits. Two dispatches (override PHASE):
//   0: G workgroups; workgroup g scans elements g*WG + lid, g*WG + lid + G*WG, ... (coalesced,
//      in increasing order per invocation), a tree reduction keeps the first maximum, and
//      (value bits, index) goes to R[r0 + 2 + 2g], R[r0 + 3 + 2g];
//   1: one workgroup reduces the G pairs the same way into R[r0].
// One workgroup alone over a 128k vocabulary is latency-bound on one compute unit (265 us on
// an H100); G of them take a few microseconds. A NaN or an infinity wins as the index BAD, so
// the token read back says the logits were not finite (a corrupted weight block) at no cost.
//
// Params P: 0 len, 1 off, 2 G, 3 r0: this row's words of R start at r0 (several rows' argmaxes
// are dispatched together, each into its own words, and read back at once).
// Dispatch: (G, 1, 1), then (1, 1, 1).

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const BAD: u32 = 0xfffffffeu;

override PHASE: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> R: array<u32>;

var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;

// Whether (ov, oi) beats (v, i): BAD always wins, NONE never does; else larger, or equal with
// a lower index.
fn better(ov: f32, oi: u32, v: f32, i: u32) -> bool {
    if (i == BAD) {
        return false;
    }
    if (oi == BAD) {
        return true;
    }
    return oi != NONE && (i == NONE || ov > v || (ov == v && oi < i));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let len = P[0];
    let groups = P[2];
    var v = -3.4e38;
    var idx = NONE;
    if (PHASE == 0u) {
        for (var i = wid.x * WG + lid; i < len; i += groups * WG) {
            let x = X[P[1] + i];
            if ((bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u) {
                idx = BAD;
                break;
            }
            if (x > v || idx == NONE) {
                v = x;
                idx = i;
            }
        }
    } else {
        for (var g = lid; g < groups; g += WG) {
            let gv = bitcast<f32>(R[P[3] + 2u + 2u * g]);
            let gi = R[P[3] + 3u + 2u * g];
            if (better(gv, gi, v, idx)) {
                v = gv;
                idx = gi;
            }
        }
    }
    bv[lid] = v;
    bi[lid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && better(bv[lid + s], bi[lid + s], bv[lid], bi[lid])) {
            bv[lid] = bv[lid + s];
            bi[lid] = bi[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        if (PHASE == 0u) {
            R[P[3] + 2u + 2u * wid.x] = bitcast<u32>(bv[0]);
            R[P[3] + 3u + 2u * wid.x] = bi[0];
        } else {
            R[P[3]] = bi[0];
        }
    }
}
