// Causal attention over the KV cache, optionally windowed, with grouped KV heads.
//
// One workgroup per (head, query token). Keys are visited in chunks of CH positions with an
// online softmax: the chunk's scores go to workgroup memory, the running max and sum are
// rescaled between chunks, and each invocation accumulates head_dim / WG output dimensions.
// The cache element type `kv_t` (f16 or f32) is prepended by the loader.
//
// Params P: 0 n tokens, 1 pos0, 2 n_head, 3 n_head_kv, 4 head_dim (<= MAX_HD), 5 window
// (0 = none: query p sees keys > p - window), 6 scale (f32 bits).
// Q, O: [n, n_head * head_dim]; K, V: [pos, n_head_kv * head_dim]. Dispatch: (n_head, n, 1).

const WG: u32 = 64u;
const CH: u32 = 256u;
const MAX_HD: u32 = 256u;
const PER: u32 = 4u; // MAX_HD / WG

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> K: array<kv_t>;
@group(0) @binding(2) var<storage, read_write> V: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

var<workgroup> qs: array<f32, MAX_HD>;
var<workgroup> sc: array<f32, CH>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>
    /*SG_PARAMS*/
) {
    /*SG_INIT*/
    let h = wid.x;
    let t = wid.y;
    let p = P[1] + t;
    let n_head = P[2];
    let hd = P[4];
    let window = P[5];
    let scale = bitcast<f32>(P[6]);
    let kvh = h / (n_head / P[3]);
    let kvrow = P[3] * hd;
    let qoff = t * n_head * hd + h * hd;
    for (var d = lid; d < hd; d += WG) {
        qs[d] = Q[qoff + d];
    }
    workgroupBarrier();
    var start = 0u;
    if (window > 0u && p + 1u > window) {
        start = p + 1u - window;
    }
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, PER>;
    for (var c0 = start; c0 <= p; c0 += CH) {
        let cn = min(CH, p + 1u - c0);
        var lmax = -3.0e38;
        for (var j = lid; j < cn; j += WG) {
            let kb = (c0 + j) * kvrow + kvh * hd;
            var s = 0.0;
            for (var d = 0u; d < hd; d++) {
                s += qs[d] * f32(K[kb + d]);
            }
            s *= scale;
            sc[j] = s;
            lmax = max(lmax, s);
        }
        let nm = max(m, wg_max(lmax, lid));
        let corr = exp(m - nm);
        var lsum = 0.0;
        for (var j = lid; j < cn; j += WG) {
            let e = exp(sc[j] - nm);
            sc[j] = e;
            lsum += e;
        }
        l = l * corr + wg_sum(lsum, lid);
        for (var k = 0u; k < PER; k++) {
            let d = lid + k * WG;
            if (d < hd) {
                var a = acc[k] * corr;
                let vb = c0 * kvrow + kvh * hd + d;
                for (var j = 0u; j < cn; j++) {
                    a += sc[j] * f32(V[vb + j * kvrow]);
                }
                acc[k] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    for (var k = 0u; k < PER; k++) {
        let d = lid + k * WG;
        if (d < hd) {
            O[qoff + d] = acc[k] / l;
        }
    }
}
