// Sums of four per-row partials (a vec4, one row per component) over a workgroup through
// workgroup memory: the fallback where the adapter lacks SUBGROUP. Expects `const WG: u32`
// (a power of two). Every invocation gets the result.

var<workgroup> rows_part: array<vec4<f32>, WG>;

fn rows_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    rows_part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            rows_part[lid] += rows_part[lid + s];
        }
        workgroupBarrier();
    }
    return rows_part[0];
}
