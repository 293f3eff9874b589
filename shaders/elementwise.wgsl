// Element-wise ops, one pipeline per OP (an override constant):
//   0 GELU-gated:  A[a + i] = gelu(A[a + i]) * B[b + i]   (tanh approximation)
//   1 SiLU-gated:  A[a + i] = silu(A[a + i]) * B[b + i]
//   2 add:         O[o + i] = A[a + i] + B[b + i]          (O may alias A or B)
//   3 scale:       A[a + i] *= s
//   4 copy:        O[o + i] = A[a + i]                     (O may alias A, disjoint ranges)
//   5 bias:        A[i] += B[i % cols]
//   6 soft cap:    A[a + i] = s * tanh(A[a + i] / s)
// Params P: 0 len, 1 a, 2 b, 3 o (element offsets), 4 s (f32 bits), 5 cols.
// Dispatch: 1-D over len, folded into (x, y) by WG * 32768.

const WG: u32 = 64u;

override OP: u32 = 0u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> A: array<f32>;
@group(0) @binding(2) var<storage, read_write> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

fn gelu(x: f32) -> f32 {
    let u = clamp(0.7978846 * x * (1.0 + 0.044715 * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= P[0]) {
        return;
    }
    let a = P[1] + i;
    switch OP {
        case 0u {
            A[a] = gelu(A[a]) * B[P[2] + i];
        }
        case 1u {
            let x = A[a];
            A[a] = x / (1.0 + exp(-x)) * B[P[2] + i];
        }
        case 2u {
            O[P[3] + i] = A[a] + B[P[2] + i];
        }
        case 3u {
            A[a] = A[a] * bitcast<f32>(P[4]);
        }
        case 4u {
            O[P[3] + i] = A[a];
        }
        case 5u {
            A[a] = A[a] + B[i % P[5]];
        }
        case 6u {
            let s = bitcast<f32>(P[4]);
            A[a] = s * tanh(clamp(A[a] / s, -15.0, 15.0));
        }
        default {}
    }
}
