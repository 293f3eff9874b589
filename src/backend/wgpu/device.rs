//! Finding a wgpu adapter and opening a device on it: enumeration for `tokenfab probe`,
//! selection (`--backend wgpu` takes the best adapter, `auto` only a discrete GPU), the
//! features and limits tokenfab asks for, and error capture (uncaptured errors and device
//! loss become [`BackendError`]s at the next submit instead of panics).

use super::super::BackendError;
use std::sync::{Arc, Mutex};

/// What `tokenfab probe` shows of an adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    /// Subgroup sizes the driver may pick (min, max).
    pub subgroup_sizes: (u32, u32),
    pub max_storage_binding_mib: u64,
    pub max_buffer_mib: u64,
    /// Storage buffers one kernel may bind (fused kernels need up to 9).
    pub max_storage_buffers_per_stage: u32,
    /// Bytes of workgroup memory one kernel may use (the 128 x 128 GEMM tile needs 32 KiB).
    pub max_workgroup_storage_bytes: u32,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapters() -> Vec<wgpu::Adapter> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        // the GL backend has no compute shaders worth using
        .filter(|a| a.get_info().backend != wgpu::Backend::Gl)
        .collect()
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let f = a.features();
    let l = a.limits();
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroup: f.contains(wgpu::Features::SUBGROUP),
        timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        max_storage_binding_mib: l.max_storage_buffer_binding_size >> 20,
        max_buffer_mib: l.max_buffer_size >> 20,
        max_storage_buffers_per_stage: l.max_storage_buffers_per_shader_stage,
        max_workgroup_storage_bytes: l.max_compute_workgroup_storage_size,
    }
}

/// Every usable adapter on this machine.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().map(summary).collect()
}

fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Whether this machine has a discrete GPU wgpu can use (what `--backend auto` looks for).
pub fn has_discrete_gpu() -> bool {
    // enumerating adapters loads every Vulkan driver — lavapipe's LLVM too, ~55 MB of resident
    // memory for a `--backend auto` run on a machine that has no GPU at all
    if cfg!(target_os = "linux")
        && pci_display_devices(std::path::Path::new("/sys/bus/pci/devices")) == Some(0)
    {
        return false;
    }
    adapters()
        .iter()
        .any(|a| a.get_info().device_type == wgpu::DeviceType::DiscreteGpu)
}

/// Display-class devices (PCI class 0x03xxxx: VGA, 3D controllers) under a sysfs
/// `bus/pci/devices` directory; `None` where it cannot be read (then ask the drivers).
fn pci_display_devices(root: &std::path::Path) -> Option<usize> {
    let mut n = 0;
    for dev in std::fs::read_dir(root).ok()? {
        let class = std::fs::read_to_string(dev.ok()?.path().join("class")).ok()?;
        n += class.trim().starts_with("0x03") as usize;
    }
    Some(n)
}

/// An open device and what was found out about it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Errors raised by wgpu outside an error scope; checked (and cleared) at each submit.
    pub errors: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it is: every later operation fails with it.
    pub lost: Arc<Mutex<Option<String>>>,
}

/// Opens the best adapter: discrete, then integrated, virtual, other, CPU (lavapipe);
/// `adapter` (a substring of the name, any case) picks one by name.
pub fn open(adapter: Option<&str>) -> Result<Gpu, BackendError> {
    let mut list = adapters();
    if list.is_empty() {
        return Err(BackendError::Device(
            "wgpu: no adapter found (no Vulkan/Metal/DX12 driver; on Debian/Ubuntu \
             `apt-get install mesa-vulkan-drivers libvulkan1` gives a software one)"
                .into(),
        ));
    }
    if let Some(want) = adapter {
        let names: Vec<String> = list.iter().map(|a| a.get_info().name).collect();
        list.retain(|a| {
            a.get_info()
                .name
                .to_lowercase()
                .contains(&want.to_lowercase())
        });
        if list.is_empty() {
            return Err(BackendError::Device(format!(
                "wgpu: no adapter matches {want:?} (found: {})",
                names.join(", ")
            )));
        }
    }
    list.sort_by_key(|a| rank(a.get_info().device_type));
    let adapter = list.remove(0);
    let summary = summary(&adapter);
    let wanted =
        wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
    let features = adapter.features() & wanted;
    // ask for everything the adapter offers: storage bindings and buffer sizes matter most
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("tokenfab"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| {
        BackendError::Device(format!("wgpu: {}: cannot open device: {e}", summary.name))
    })?;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        if let Ok(mut v) = sink.lock() {
            v.push(e.to_string());
        }
    }));
    let lost = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&lost);
    device.set_device_lost_callback(move |reason, msg| {
        if let Ok(mut v) = sink.lock() {
            *v = Some(match msg.trim() {
                "" => format!("{reason:?}"),
                m => format!("{reason:?}: {m}"),
            });
        }
    });
    Ok(Gpu {
        device,
        queue,
        summary,
        limits,
        features,
        errors,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::pci_display_devices;

    #[test]
    fn display_devices_are_counted_from_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("devices");
        std::fs::create_dir(&root).unwrap();
        assert_eq!(pci_display_devices(&root), Some(0));
        let dev = |name: &str, class: &str| {
            std::fs::create_dir(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("class"), class).unwrap();
        };
        dev("0000:00:01.0", "0x020000\n"); // network
        dev("0000:00:02.0", "0x060000\n"); // bridge
        assert_eq!(pci_display_devices(&root), Some(0));
        dev("0000:65:00.0", "0x030200\n"); // a 3D controller (an H100)
        assert_eq!(pci_display_devices(&root), Some(1));
        assert_eq!(pci_display_devices(&dir.path().join("nope")), None);
    }
}
