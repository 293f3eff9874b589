// Peak read bandwidth: every invocation XORs the 16-byte words i, i + stride, i + 2 stride …
// of B (neighbouring invocations read neighbouring words), and writes only if the result
// equals a value the host never passes, so the loads cannot be optimized away.
//
// Params P: 0 words (vec4<u32>) in B, 1 stride (invocations in the dispatch), 2 sentinel.
// Dispatch: (stride / WG, 1, 1).

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> O: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<u32>(0u);
    for (var i = gid.x; i < P[0]; i += P[1]) {
        acc ^= B[i];
    }
    if (acc.x == P[2] && acc.y == P[2] && acc.z == P[2] && acc.w == P[2]) {
        O[0] = gid.x;
    }
}
