// RMS norm: Y[r, c] = X[r, c] / sqrt(mean(X[r, :]^2) + eps) * G[c]. Y may alias X (each
// element is read and then written by the same invocation, after the reduction).
//
// One workgroup of 256 invocations per row; each invocation has four loads in flight per
// step (a decode row of 4096 is 4 steps, not 64 dependent loads: the kernel is latency-bound).
//
// Params P: 0 cols, 1 rows, 2 eps (f32 bits). Dispatch: (rows, 1, 1), one workgroup a row.

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

// X[base + c] of the row, 0 past its end.
fn xat(base: u32, c: u32, cols: u32) -> f32 {
    return select(0.0, X[base + min(c, cols - 1u)], c < cols);
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>
    /*SG_PARAMS*/
) {
    /*SG_INIT*/
    let cols = P[0];
    let base = wid.x * cols;
    var s = vec4<f32>(0.0);
    for (var c = lid; c < cols; c += 4u * WG) {
        let v = vec4<f32>(xat(base, c, cols), xat(base, c + WG, cols), xat(base, c + 2u * WG, cols), xat(base, c + 3u * WG, cols));
        s += v * v;
    }
    let total = wg_sum(s.x + s.y + s.z + s.w, lid);
    let inv = 1.0 / sqrt(total / f32(cols) + bitcast<f32>(P[2]));
    for (var c = lid; c < cols; c += 4u * WG) {
        let v = vec4<f32>(xat(base, c, cols), xat(base, c + WG, cols), xat(base, c + 2u * WG, cols), xat(base, c + 3u * WG, cols));
        for (var k = 0u; k < 4u; k++) {
            let ck = c + k * WG;
            if (ck < cols) {
                Y[base + ck] = v[k] * inv * G[ck];
            }
        }
    }
}
