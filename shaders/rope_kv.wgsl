// RoPE and KV-cache writes in one dispatch (the step between an attention block's
// projections and its attention): rotates the queries Q and keys K in place from the
// (cos, sin) table T[pos, head_dim] as rope.wgsl does, writes the rotated keys to the cache
// KC and the values V to the cache VC at rows pos0.. (as kv.wgsl does; `kv_t` is the cache's
// element type, prepended by the loader). Replaces two rope and two store_kv dispatches.
//
// One invocation per (token, head, pair): per token the n_head query heads, then the
// n_head_kv key heads, then the n_head_kv value heads (a value "pair" is copied, not turned).
// NEOX layout (mode 0) pairs (i, i + n_rot / 2); NORM layout (mode 1) pairs (2i, 2i + 1);
// pairs i >= n_rot / 2 (partial rotary) are (2i, 2i + 1) with (cos, sin) = (1, 0), as in
// rope.wgsl.
//
// Params P: 0 n tokens, 1 n_head, 2 n_head_kv, 3 head_dim, 4 pos0, 5 mode, 6 row0 (the
// first of the n rows of Q, K, V: one sequence's tokens in a batch), 7 n_rot, 8 rows of the
// caches (position p at row p % rows: the identity in a linear cache, a ring in a
// sliding-window one).
// Dispatch: 1-D over n * (n_head + 2 n_head_kv) * head_dim / 2, folded into (x, y) by
// WG * 32768.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> T: array<f32>;
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;
@group(0) @binding(3) var<storage, read_write> K: array<f32>;
@group(0) @binding(4) var<storage, read_write> V: array<f32>;
@group(0) @binding(5) var<storage, read_write> KC: array<kv_t>;
@group(0) @binding(6) var<storage, read_write> VC: array<kv_t>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hq = P[1];
    let hk = P[2];
    let hd = P[3];
    let half = hd / 2u;
    let per_token = (hq + 2u * hk) * half;
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= P[0] * per_token) {
        return;
    }
    let t = idx / per_token;
    let r = P[6] + t;
    let h = (idx % per_token) / half;
    let i = idx % half;
    let pos = P[4] + t;
    let crow = pos % P[8];
    // the pair's offsets within a head
    var a = i;
    var b = i + P[7] / 2u;
    if (P[5] == 1u || 2u * i >= P[7]) {
        a = 2u * i;
        b = a + 1u;
    }
    let c = T[pos * hd + 2u * i];
    let s = T[pos * hd + 2u * i + 1u];
    if (h < hq) {
        let o = (r * hq + h) * hd;
        let x0 = Q[o + a];
        let x1 = Q[o + b];
        Q[o + a] = x0 * c - x1 * s;
        Q[o + b] = x0 * s + x1 * c;
    } else if (h < hq + hk) {
        let hh = h - hq;
        let o = (r * hk + hh) * hd;
        let co = (crow * hk + hh) * hd;
        let x0 = K[o + a];
        let x1 = K[o + b];
        let y0 = x0 * c - x1 * s;
        let y1 = x0 * s + x1 * c;
        K[o + a] = y0;
        K[o + b] = y1;
        KC[co + a] = kv_t(y0);
        KC[co + b] = kv_t(y1);
    } else {
        let hh = h - hq - hk;
        let o = (r * hk + hh) * hd;
        let co = (crow * hk + hh) * hd;
        VC[co + a] = kv_t(V[o + a]);
        VC[co + b] = kv_t(V[o + b]);
    }
}
