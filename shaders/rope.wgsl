// Rotary position embedding, in place, from a precomputed (cos, sin) table T[pos, head_dim]
// (the CPU backend's table, so both rotate identically).
//
// NEOX layout (mode 0) rotates pairs (i, i + n_rot / 2); NORM layout (mode 1, Llama)
// rotates pairs (2i, 2i + 1). Pairs i >= n_rot / 2 are the dimensions partial rotary leaves
// alone, (2i, 2i + 1), with (cos, sin) = (1, 0) in the table (the CPU backend's `Rope::pair`).
// Params P: 0 n tokens, 1 heads, 2 head_dim, 3 pos0, 4 mode, 5 row0 (the first of the n rows
// of X: one sequence's tokens in a batch), 6 n_rot.
// One invocation per (token, head, pair). Dispatch: 1-D over n * heads * head_dim / 2,
// folded into (x, y) by WG * 32768.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> T: array<f32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let heads = P[1];
    let hd = P[2];
    let half = hd / 2u;
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= P[0] * heads * half) {
        return;
    }
    let i = idx % half;
    let th = idx / half; // token * heads + head
    let t = th / heads;
    let tb = (P[3] + t) * hd;
    let c = T[tb + 2u * i];
    let s = T[tb + 2u * i + 1u];
    let base = (P[5] * heads + th) * hd;
    var a = base + i;
    var b = a + P[6] / 2u;
    if (P[4] == 1u || 2u * i >= P[6]) {
        a = base + 2u * i;
        b = a + 1u;
    }
    let x0 = X[a];
    let x1 = X[b];
    X[a] = x0 * c - x1 * s;
    X[b] = x0 * s + x1 * c;
}
