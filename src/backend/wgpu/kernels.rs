//! The WGSL kernels: which shader file each kernel family lives in, how its source is
//! assembled (shared libraries from `shaders/lib/`, the reduction flavour, the KV element
//! type), its bind-group layout, and the cache of compiled pipelines keyed by a typed
//! [`Kernel`] (family plus the values of its `override` constants).

use crate::gguf::GgmlType;
use std::collections::HashMap;

const QUANT: &str = include_str!("../../../shaders/lib/quant.wgsl");
const REDUCE_SHARED: &str = include_str!("../../../shaders/lib/reduce_shared.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../../shaders/lib/reduce_subgroup.wgsl");
const ROWS_SHARED: &str = include_str!("../../../shaders/lib/rows_shared.wgsl");
const ROWS_SUBGROUP: &str = include_str!("../../../shaders/lib/rows_subgroup.wgsl");

/// Element-wise ops of `shaders/elementwise.wgsl` (the `OP` override constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EwOp {
    GeluGlu = 0,
    SiluGlu = 1,
    Add = 2,
    Scale = 3,
    Copy = 4,
    Bias = 5,
    Softcap = 6,
}

/// What `shaders/matvec.wgsl` does with a row's result (its `EPI` override constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    Store = 0,
    Add = 1,
    SiluGlu = 2,
    GeluGlu = 3,
    Qkv = 4,
}

/// Tile of `shaders/gemm.wgsl`: 64 x 64 (`main`, 16 KiB of workgroup memory) or 128 x 128
/// (`main128`, 32 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmTile {
    T64,
    T128,
}

impl GemmTile {
    /// Weight rows and tokens of one tile.
    pub fn size(self) -> usize {
        match self {
            GemmTile::T64 => 64,
            GemmTile::T128 => 128,
        }
    }
}

/// A pipeline: kernel family plus override-constant values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatMul(GgmlType),
    /// The decode matrix-vector product (`matvec.wgsl`; Q4_K only).
    /// The decode matrix-vector product (`matvec.wgsl`; Q4_K only), with its epilogue and
    /// whether it RMS-normalizes its input first.
    MatVec(GgmlType, Epilogue, bool),
    /// The tiled prefill product (`gemm.wgsl`; every type).
    Gemm(GgmlType, GemmTile),
    Embed(GgmlType),
    RmsNorm,
    Rope,
    RopeKv,
    StoreKv,
    Attention,
    Elementwise(EwOp),
    Argmax,
    /// Argmax's second pass (over the first pass's per-workgroup maxima).
    ArgmaxFinal,
    TopK,
    Bandwidth,
}

/// How a kernel binds a buffer (binding 0 is always the params window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// What the adapter can do, as far as shader assembly is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShaderCaps {
    pub subgroups: bool,
    pub f16: bool,
}

impl Kernel {
    /// A short name for profiles.
    pub fn name(&self) -> String {
        match self {
            Kernel::MatMul(t) => format!("matmul.{t}"),
            Kernel::MatVec(t, e, norm) => {
                let mut s = format!("matvec.{t}");
                if *norm {
                    s = format!("rms_norm+{s}");
                }
                if *e != Epilogue::Store {
                    s = format!("{s}+{}", format!("{e:?}").to_lowercase());
                }
                s
            }
            Kernel::Gemm(t, tile) => format!("gemm{}.{t}", tile.size()),
            Kernel::Embed(t) => format!("embed.{t}"),
            Kernel::RmsNorm => "rms_norm".into(),
            Kernel::Rope => "rope".into(),
            Kernel::RopeKv => "rope+store_kv".into(),
            Kernel::StoreKv => "store_kv".into(),
            Kernel::Attention => "attention".into(),
            Kernel::Elementwise(op) => format!("{op:?}").to_lowercase(),
            Kernel::Argmax => "argmax".into(),
            Kernel::ArgmaxFinal => "argmax.final".into(),
            Kernel::TopK => "top_k".into(),
            Kernel::Bandwidth => "bandwidth".into(),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Kernel::MatMul(_) => Family::MatMul,
            Kernel::MatVec(..) => Family::MatVec,
            Kernel::Gemm(..) => Family::Gemm,
            Kernel::Embed(_) => Family::Embed,
            Kernel::RmsNorm => Family::Norm,
            Kernel::Rope => Family::Rope,
            Kernel::RopeKv => Family::RopeKv,
            Kernel::StoreKv => Family::Kv,
            Kernel::Attention => Family::Attention,
            Kernel::Elementwise(_) => Family::Elementwise,
            Kernel::Argmax | Kernel::ArgmaxFinal => Family::Argmax,
            Kernel::TopK => Family::TopK,
            Kernel::Bandwidth => Family::Bandwidth,
        }
    }

    /// The shader's entry point.
    pub fn entry_point(&self) -> &'static str {
        match self {
            Kernel::Gemm(_, GemmTile::T128) => "main128",
            _ => "main",
        }
    }

    /// Values of the shader's `override` constants.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        match self {
            Kernel::MatMul(t) | Kernel::Gemm(t, _) | Kernel::Embed(t) => {
                vec![("TYPE", t.id() as f64)]
            }
            Kernel::Elementwise(op) => vec![("OP", *op as u32 as f64)],
            Kernel::MatVec(_, e, norm) => {
                vec![("EPI", *e as u32 as f64), ("NORM", *norm as u32 as f64)]
            }
            Kernel::Argmax => vec![("PHASE", 0.0)],
            Kernel::ArgmaxFinal => vec![("PHASE", 1.0)],
            _ => Vec::new(),
        }
    }
}

/// A kernel family: one `.wgsl` file in `shaders/` and one dispatch file here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    MatMul,
    MatVec,
    Gemm,
    Embed,
    Norm,
    Rope,
    RopeKv,
    Kv,
    Attention,
    Elementwise,
    Argmax,
    TopK,
    Bandwidth,
}

impl Family {
    pub const ALL: [Family; 13] = [
        Family::MatMul,
        Family::MatVec,
        Family::Gemm,
        Family::Embed,
        Family::Norm,
        Family::Rope,
        Family::RopeKv,
        Family::Kv,
        Family::Attention,
        Family::Elementwise,
        Family::Argmax,
        Family::TopK,
        Family::Bandwidth,
    ];

    /// The shader file's text.
    pub fn file(&self) -> (&'static str, &'static str) {
        match self {
            Family::MatMul => ("matmul.wgsl", include_str!("../../../shaders/matmul.wgsl")),
            Family::MatVec => ("matvec.wgsl", include_str!("../../../shaders/matvec.wgsl")),
            Family::Gemm => ("gemm.wgsl", include_str!("../../../shaders/gemm.wgsl")),
            Family::Embed => ("embed.wgsl", include_str!("../../../shaders/embed.wgsl")),
            Family::Norm => ("norm.wgsl", include_str!("../../../shaders/norm.wgsl")),
            Family::Rope => ("rope.wgsl", include_str!("../../../shaders/rope.wgsl")),
            Family::RopeKv => (
                "rope_kv.wgsl",
                include_str!("../../../shaders/rope_kv.wgsl"),
            ),
            Family::Kv => ("kv.wgsl", include_str!("../../../shaders/kv.wgsl")),
            Family::Attention => (
                "attention.wgsl",
                include_str!("../../../shaders/attention.wgsl"),
            ),
            Family::Elementwise => (
                "elementwise.wgsl",
                include_str!("../../../shaders/elementwise.wgsl"),
            ),
            Family::Argmax => ("argmax.wgsl", include_str!("../../../shaders/argmax.wgsl")),
            Family::TopK => ("topk.wgsl", include_str!("../../../shaders/topk.wgsl")),
            Family::Bandwidth => (
                "bandwidth.wgsl",
                include_str!("../../../shaders/bandwidth.wgsl"),
            ),
        }
    }

    /// Bindings after the params window, in order.
    pub fn bindings(&self) -> &'static [Access] {
        use Access::*;
        match self {
            Family::MatMul => &[Read, ReadWrite, ReadWrite],
            Family::MatVec => &[
                Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite,
            ],
            Family::Gemm => &[Read, Read, ReadWrite],
            Family::Embed => &[Read, ReadWrite],
            Family::Norm => &[Read, ReadWrite, ReadWrite],
            Family::Rope => &[Read, ReadWrite],
            Family::RopeKv => &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
            Family::Kv => &[ReadWrite, ReadWrite],
            Family::Attention => &[ReadWrite, ReadWrite, ReadWrite, ReadWrite],
            Family::Elementwise => &[ReadWrite, ReadWrite, ReadWrite],
            Family::Argmax | Family::TopK => &[ReadWrite, ReadWrite],
            Family::Bandwidth => &[Read, ReadWrite],
        }
    }

    fn uses_quant(&self) -> bool {
        matches!(self, Family::MatMul | Family::Gemm | Family::Embed)
    }

    fn uses_reduce(&self) -> bool {
        matches!(self, Family::MatMul | Family::Norm | Family::Attention)
    }

    fn uses_kv(&self) -> bool {
        matches!(self, Family::Kv | Family::RopeKv | Family::Attention)
    }

    /// The complete WGSL module for this family on an adapter with `caps`.
    pub fn source(&self, caps: ShaderCaps) -> String {
        let (_, body) = self.file();
        let mut s = String::new();
        if self.uses_kv() {
            if caps.f16 {
                s.push_str("enable f16;\nalias kv_t = f16;\n");
            } else {
                s.push_str("alias kv_t = f32;\n");
            }
        }
        let mut body = body.to_string();
        let rows_lib = *self == Family::MatVec;
        if (self.uses_reduce() || rows_lib) && caps.subgroups {
            body = body
                .replace(
                    "/*SG_PARAMS*/",
                    ", @builtin(subgroup_id) sgid: u32, @builtin(num_subgroups) nsg: u32, \
                     @builtin(subgroup_invocation_id) sgl: u32, @builtin(subgroup_size) sgs: u32",
                )
                .replace("/*SG_INIT*/", "sg_init(sgid, nsg, sgl, sgs);");
        }
        if self.uses_reduce() {
            s.push_str(if caps.subgroups {
                REDUCE_SUBGROUP
            } else {
                REDUCE_SHARED
            });
        }
        if rows_lib {
            s.push_str(if caps.subgroups {
                ROWS_SUBGROUP
            } else {
                ROWS_SHARED
            });
        }
        if self.uses_quant() {
            s.push_str(QUANT);
        }
        s.push_str(&body);
        s
    }
}

/// Compiled pipelines and the per-family layouts they share.
pub struct Pipelines {
    caps: ShaderCaps,
    modules: HashMap<Family, wgpu::ShaderModule>,
    layouts: HashMap<Family, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: HashMap<Kernel, wgpu::ComputePipeline>,
    param_window: u64,
}

impl Pipelines {
    pub fn new(caps: ShaderCaps, param_window: u64) -> Self {
        Pipelines {
            caps,
            modules: HashMap::new(),
            layouts: HashMap::new(),
            pipelines: HashMap::new(),
            param_window,
        }
    }

    pub fn caps(&self) -> ShaderCaps {
        self.caps
    }

    /// The bind-group layout of `family` (created on first use).
    pub fn layout(&mut self, device: &wgpu::Device, family: Family) -> &wgpu::BindGroupLayout {
        let window = self.param_window;
        &self
            .layouts
            .entry(family)
            .or_insert_with(|| {
                let storage = |binding: u32, read_only: bool, dynamic: bool, size: Option<u64>| {
                    wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only },
                            has_dynamic_offset: dynamic,
                            min_binding_size: size.and_then(wgpu::BufferSize::new),
                        },
                        count: None,
                    }
                };
                let mut entries = vec![storage(0, true, true, Some(window))];
                for (i, a) in family.bindings().iter().enumerate() {
                    entries.push(storage(i as u32 + 1, *a == Access::Read, false, None));
                }
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(family.file().0),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(family.file().0),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (bgl, pl)
            })
            .0
    }

    /// The pipeline of `kernel` (compiled on first use).
    pub fn get(&mut self, device: &wgpu::Device, kernel: Kernel) -> &wgpu::ComputePipeline {
        if !self.pipelines.contains_key(&kernel) {
            let family = kernel.family();
            self.layout(device, family);
            let caps = self.caps;
            let module = self.modules.entry(family).or_insert_with(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(family.file().0),
                    source: wgpu::ShaderSource::Wgsl(family.source(caps).into()),
                })
            });
            let constants = kernel.constants();
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(family.file().0),
                layout: Some(&self.layouts[&family].1),
                module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
            self.pipelines.insert(kernel, pipeline);
        }
        &self.pipelines[&kernel]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shader, in every flavour the loader assembles, parses and validates with naga.
    #[test]
    fn shaders_validate_with_naga() {
        for family in Family::ALL {
            for subgroups in [false, true] {
                for f16 in [false, true] {
                    let src = family.source(ShaderCaps { subgroups, f16 });
                    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                        panic!("{}: {}", family.file().0, e.emit_to_string(&src))
                    });
                    // unpack2x16float: wgpu grants this on every native backend
                    let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
                    if subgroups {
                        caps |= naga::valid::Capabilities::SUBGROUP;
                    }
                    if f16 {
                        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
                    }
                    let mut v =
                        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
                    if subgroups {
                        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
                        v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
                    }
                    v.validate(&module).unwrap_or_else(|e| {
                        panic!(
                            "{} (subgroups {subgroups}, f16 {f16}): {}",
                            family.file().0,
                            e.emit_to_string(&src)
                        )
                    });
                }
            }
        }
    }

    #[test]
    fn subgroup_flavour_splices_builtins() {
        let s = Family::MatMul.source(ShaderCaps {
            subgroups: true,
            f16: false,
        });
        assert!(s.contains("sg_init(sgid, nsg, sgl, sgs);") && s.contains("subgroupAdd"));
        let s = Family::MatMul.source(ShaderCaps {
            subgroups: false,
            f16: false,
        });
        assert!(!s.contains("subgroupAdd(") && !s.contains("sg_init(") && s.contains("fn deq32"));
        assert!(Family::Attention
            .source(ShaderCaps {
                subgroups: false,
                f16: true
            })
            .starts_with("enable f16;"));
    }
}
