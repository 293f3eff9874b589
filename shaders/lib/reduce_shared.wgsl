// Workgroup reductions through workgroup memory: the fallback where the adapter lacks
// SUBGROUP. Expects `const WG: u32` (a power of two). Every invocation gets the result.

var<workgroup> red: array<f32, WG>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Matrix rows: one invocation per row, no reduction and no barrier (workgroup-memory
// reductions across a row were slower everywhere we measured).
fn rows_per_wg() -> u32 {
    return WG;
}

fn row_slot(lid: u32) -> u32 {
    return lid;
}

fn row_lane(lid: u32) -> u32 {
    return 0u;
}

fn row_lanes() -> u32 {
    return 1u;
}

fn row_sum(v: f32) -> f32 {
    return v;
}
