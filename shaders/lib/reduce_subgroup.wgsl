// Workgroup reductions with subgroup operations (adapters with SUBGROUP): one subgroup
// reduction, one barrier, then the per-subgroup partials are combined in a fixed order (so
// results do not depend on scheduling). Expects `const WG: u32`; kernels pass the subgroup
// builtins to `sg_init` first (the loader splices them into the entry point).

var<workgroup> red: array<f32, WG>;
var<private> sg_id: u32;
var<private> sg_count: u32;
var<private> sg_lane: u32;
var<private> sg_size: u32;

fn sg_init(id: u32, count: u32, lane: u32, size: u32) {
    sg_id = id;
    sg_count = count;
    sg_lane = lane;
    sg_size = size;
}

// Matrix rows: one subgroup per row, its lanes striding over the row, one subgroupAdd, no
// barrier.
fn rows_per_wg() -> u32 {
    return sg_count;
}

fn row_slot(lid: u32) -> u32 {
    return sg_id;
}

fn row_lane(lid: u32) -> u32 {
    return sg_lane;
}

fn row_lanes() -> u32 {
    return sg_size;
}

fn row_sum(v: f32) -> f32 {
    return subgroupAdd(v);
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
