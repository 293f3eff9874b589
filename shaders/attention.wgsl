// Causal attention over the KV cache, optionally windowed, with grouped KV heads.
//
// One workgroup per (head, query token). Keys are visited in chunks of CH positions with an
// online softmax: the chunk's scores go to workgroup memory (one key per invocation, four
// partial sums in flight), the running max and sum are rescaled between chunks. For the
// weighted sum of values the WG invocations form S = WG / head_dim groups of head_dim: group
// s takes keys s, s + S, ... of the chunk, four at a time, so S * 4 value loads are in
// flight per dimension instead of one; the groups' sums are added at the end.
// The cache element type `kv_t` (f16 or f32) is prepended by the loader.
//
// Params P: 0 n tokens, 1 pos0, 2 n_head, 3 n_head_kv, 4 head_dim (<= MAX_HD), 5 window
// (0 = none: query p sees keys > p - window), 6 scale (f32 bits), 7 row0 (the first of the n
// rows of Q and O: one sequence's tokens in a batch), 8 soft cap (f32 bits; 0 = none: scores
// become cap * tanh(score / cap)), 9 rows of the caches.
// Q, O: [row0 + n, n_head * head_dim]; K, V: [rows, n_head_kv * head_dim] (that sequence's
// caches): position p at row p % rows, the identity in a linear cache (rows > every position)
// and a ring in a sliding-window one. The keys one query visits span at most `rows`
// positions (the host checks it), so from a chunk's first row a key's row needs at most one
// subtraction of `rows`. Dispatch: (n_head, n, 1).

const WG: u32 = 256u;
const CH: u32 = 256u;
const MAX_HD: u32 = 256u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> K: array<kv_t>;
@group(0) @binding(2) var<storage, read_write> V: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

var<workgroup> qs: array<f32, MAX_HD>;
var<workgroup> sc: array<f32, CH>;
var<workgroup> pv: array<f32, WG>;

// The row of the key j places after a chunk starting at row r0 (see the header).
fn ring_row(r0: u32, j: u32, rows: u32) -> u32 {
    let r = r0 + j;
    return select(r, r - rows, r >= rows);
}

@compute @workgroup_size(256)
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
    let cap = bitcast<f32>(P[8]);
    let kvh = h / (n_head / P[3]);
    let kvrow = P[3] * hd;
    let rows = P[9];
    let qoff = (P[7] + t) * n_head * hd + h * hd;
    // this invocation's value dimension and key group
    let groups = max(WG / hd, 1u);
    let d = lid % hd;
    let grp = lid / hd;
    let in_group = grp < groups;
    for (var i = lid; i < hd; i += WG) {
        qs[i] = Q[qoff + i];
    }
    workgroupBarrier();
    var start = 0u;
    if (window > 0u && p + 1u > window) {
        start = p + 1u - window;
    }
    var m = -3.0e38;
    var l = 0.0;
    var acc = 0.0;
    for (var c0 = start; c0 <= p; c0 += CH) {
        let cn = min(CH, p + 1u - c0);
        let r0 = c0 % rows;
        var lmax = -3.0e38;
        for (var j = lid; j < cn; j += WG) {
            let kb = ring_row(r0, j, rows) * kvrow + kvh * hd;
            var s4 = vec4<f32>(0.0);
            var e = 0u;
            for (; e + 4u <= hd; e += 4u) {
                s4 += vec4<f32>(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u])
                    * vec4<f32>(f32(K[kb + e]), f32(K[kb + e + 1u]), f32(K[kb + e + 2u]), f32(K[kb + e + 3u]));
            }
            var s = s4.x + s4.y + s4.z + s4.w;
            for (; e < hd; e++) {
                s += qs[e] * f32(K[kb + e]);
            }
            s *= scale;
            if (cap > 0.0) {
                s = cap * tanh(clamp(s / cap, -15.0, 15.0));
            }
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
        if (in_group) {
            let vb = kvh * hd + d;
            var a = vec4<f32>(0.0);
            var j = grp;
            for (; j + 3u * groups < cn; j += 4u * groups) {
                a += vec4<f32>(sc[j], sc[j + groups], sc[j + 2u * groups], sc[j + 3u * groups])
                    * vec4<f32>(
                        f32(V[vb + ring_row(r0, j, rows) * kvrow]),
                        f32(V[vb + ring_row(r0, j + groups, rows) * kvrow]),
                        f32(V[vb + ring_row(r0, j + 2u * groups, rows) * kvrow]),
                        f32(V[vb + ring_row(r0, j + 3u * groups, rows) * kvrow]),
                    );
            }
            for (; j < cn; j += groups) {
                a.x += sc[j] * f32(V[vb + ring_row(r0, j, rows) * kvrow]);
            }
            acc = acc * corr + (a.x + a.y + a.z + a.w);
        }
        m = nm;
        workgroupBarrier();
    }
    // add the key groups' sums
    pv[lid] = select(0.0, acc, in_group);
    workgroupBarrier();
    if (lid < hd) {
        var o = 0.0;
        for (var g = 0u; g < groups; g++) {
            o += pv[g * hd + lid];
        }
        O[qoff + lid] = o / l;
    }
}
