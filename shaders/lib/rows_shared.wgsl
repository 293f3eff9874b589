// Sums of per-row partials over a workgroup through workgroup memory (the fallback where the
// adapter lacks SUBGROUP): `a` and `b` hold four rows each (one per component; `b` is the
// second matrix of a fused gate/up product). Expects `const WG: u32` (a power of two).
// Every invocation gets the result. Call once per kernel (no barrier after the reads).

struct Rows8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

var<workgroup> rows_part: array<vec4<f32>, 2u * WG>;

fn rows_sum(a: vec4<f32>, b: vec4<f32>, lid: u32) -> Rows8 {
    rows_part[lid] = a;
    rows_part[WG + lid] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            rows_part[lid] += rows_part[lid + s];
            rows_part[WG + lid] += rows_part[WG + lid + s];
        }
        workgroupBarrier();
    }
    return Rows8(rows_part[0], rows_part[WG]);
}
