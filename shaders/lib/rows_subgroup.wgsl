// Sums of per-row partials over a workgroup, with subgroup operations: `a` and `b` hold
// four rows each (one per component; `b` is the second matrix of a fused gate/up product).
// One subgroupAdd each, one barrier, then every invocation adds the per-subgroup partials in
// a fixed order (independent of scheduling and of how many subgroups the driver chose).
// Expects `const WG: u32`; kernels pass the subgroup builtins to `sg_init` first (the loader
// splices them into the entry point). Call once per kernel (no barrier after the reads).

struct Rows8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

var<workgroup> rows_part: array<vec4<f32>, 2u * WG>;
var<private> sg_id: u32;
var<private> sg_count: u32;
var<private> sg_lane: u32;

fn sg_init(id: u32, count: u32, lane: u32, size: u32) {
    sg_id = id;
    sg_count = count;
    sg_lane = lane;
}

fn rows_sum(a: vec4<f32>, b: vec4<f32>, lid: u32) -> Rows8 {
    let sa = subgroupAdd(a);
    let sb = subgroupAdd(b);
    if (sg_lane == 0u) {
        rows_part[2u * sg_id] = sa;
        rows_part[2u * sg_id + 1u] = sb;
    }
    workgroupBarrier();
    var r = Rows8(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var i = 0u; i < sg_count; i++) {
        r.a += rows_part[2u * i];
        r.b += rows_part[2u * i + 1u];
    }
    return r;
}
