// Sums of four per-row partials (a vec4, one row per component) over a workgroup, with
// subgroup operations: one subgroupAdd, one barrier, then every invocation adds the
// per-subgroup partials in a fixed order (independent of scheduling and of how many
// subgroups the driver chose). Expects `const WG: u32`; kernels pass the subgroup builtins
// to `sg_init` first (the loader splices them into the entry point).

var<workgroup> rows_part: array<vec4<f32>, WG>;
var<private> sg_id: u32;
var<private> sg_count: u32;
var<private> sg_lane: u32;

fn sg_init(id: u32, count: u32, lane: u32, size: u32) {
    sg_id = id;
    sg_count = count;
    sg_lane = lane;
}

fn rows_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let s = subgroupAdd(v);
    if (sg_lane == 0u) {
        rows_part[sg_id] = s;
    }
    workgroupBarrier();
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < sg_count; i++) {
        r += rows_part[i];
    }
    return r;
}
