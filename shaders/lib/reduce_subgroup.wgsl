// Workgroup reductions with subgroup operations (adapters with SUBGROUP): one subgroup
// reduction, one barrier, then the per-subgroup partials are combined in a fixed order (so
// results do not depend on scheduling). Expects `const WG: u32`; kernels pass the subgroup
// builtins to `sg_init` first (the loader splices them into the entry point).

var<workgroup> red: array<f32, WG>;
var<private> sg_id: u32;
var<private> sg_count: u32;
var<private> sg_lane: u32;

fn sg_init(id: u32, count: u32, lane: u32) {
    sg_id = id;
    sg_count = count;
    sg_lane = lane;
}

fn wg_sum(v: f32, lid: u32) -> f32 {
    let s = subgroupAdd(v);
    if (sg_lane == 0u) {
        red[sg_id] = s;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var i = 0u; i < sg_count; i++) {
        r += red[i];
    }
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    let s = subgroupMax(v);
    if (sg_lane == 0u) {
        red[sg_id] = s;
    }
    workgroupBarrier();
    var r = red[0];
    for (var i = 1u; i < sg_count; i++) {
        r = max(r, red[i]);
    }
    workgroupBarrier();
    return r;
}
