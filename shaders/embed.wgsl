// Embedding rows: Y[t, :] = dequantized W row ids[t], decoded from the raw GGUF blocks.
//
// Dispatched once per weight part; a token whose id falls in another part is skipped.
// Params P: 0 rows in this part, 1 cols, 2 n tokens, 3 row0 of the part, 4 row bytes,
// 5 output offset (elements),
// 8.. the n token ids. Dispatch: (ceil(cols / 32 / WG), n, 1).

const WG: u32 = 64u;

override TYPE: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let cols = P[1];
    let t = wid.y;
    let c = wid.x * WG + lid;
    let id = P[8u + t];
    let yo = P[5];
    if (c >= cols / 32u || id < P[3] || id >= P[3] + P[0]) {
        return;
    }
    var w: array<f32, 32>;
    deq32((id - P[3]) * P[4], c * 32u, &w);
    for (var l = 0u; l < 32u; l++) {
        Y[yo + t * cols + c * 32u + l] = w[l];
    }
}
