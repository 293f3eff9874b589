// KV-cache writes: n rows of `row` values from X (from element src_off) to the cache C at
// positions pos0.., position p at row p % rows (the identity in a linear cache, a ring in a
// sliding-window one). `kv_t` is f16 where the adapter has SHADER_F16 and f32 otherwise (the
// loader prepends the alias).
//
// Params P: 0 count (n * row), 1 pos0, 2 src_off (in X), 3 row, 4 rows of C. Dispatch: 1-D
// over count, folded into (x, y) by WG * 32768.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<kv_t>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < P[0]) {
        let row = P[3];
        let r = (P[1] + i / row) % P[4];
        C[r * row + i % row] = kv_t(X[P[2] + i]);
    }
}
