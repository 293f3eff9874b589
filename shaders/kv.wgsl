// KV-cache writes: C[off + i] = kv_t(X[src_off + i]) for i < count. `kv_t` is f16 where the adapter
// has SHADER_F16 and f32 otherwise (the loader prepends the alias).
//
// Params P: 0 count, 1 off (in C), 2 src_off (in X). Dispatch: 1-D over count, folded into (x, y) by WG * 32768.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<kv_t>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < P[0]) {
        C[P[1] + i] = kv_t(X[P[2] + i]);
    }
}
