// RMS norm: Y[r, c] = X[r, c] / sqrt(mean(X[r, :]^2) + eps) * G[c]. Y may alias X (each
// element is read and then written by the same invocation, after the reduction).
//
// Params P: 0 cols, 1 rows, 2 eps (f32 bits). Dispatch: (rows, 1, 1), one workgroup a row.

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>
    /*SG_PARAMS*/
) {
    /*SG_INIT*/
    let cols = P[0];
    let base = wid.x * cols;
    var s = 0.0;
    for (var c = lid; c < cols; c += WG) {
        let v = X[base + c];
        s += v * v;
    }
    let total = wg_sum(s, lid);
    let inv = 1.0 / sqrt(total / f32(cols) + bitcast<f32>(P[2]));
    for (var c = lid; c < cols; c += WG) {
        Y[base + c] = X[base + c] * inv * G[c];
    }
}
