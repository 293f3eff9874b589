//! `tokenfab probe`: the devices and sensors tokenfab sees here, and the peak memory read
//! bandwidth of each device (measured, then cached for `run` and `bench`).

use anyhow::Result;
use clap::Args;
use std::fmt::Write as _;
use std::io::Write;
use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::telemetry::energy::{open_meter, SourceKind, SysRoots};
use tokenfab::telemetry::probe::{cpu_info, gpu_peak, measure_cpu, Measure, ProbeCache};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Threads for the CPU bandwidth measurement (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Skip the bandwidth measurement (show the cached value, if any).
    #[arg(long = "no-bandwidth")]
    pub no_bandwidth: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ProbeArgs) -> Result<()> {
    let info = cpu_info();
    let threads = if a.threads == 0 {
        info.logical_cores
    } else {
        a.threads
    };
    let mut cache = ProbeCache::load();
    let mut saved_to = None;
    if !a.no_bandwidth {
        let b = measure_cpu(threads, &info);
        cache.upsert(b);
        saved_to = cache.save().ok();
    }
    let bw = cache.find("cpu", &info.model, threads).cloned();
    // every source on its own, so each says whether (and why not) it is available
    let statuses: Vec<_> = [SourceKind::Nvml, SourceKind::Rapl, SourceKind::Battery]
        .into_iter()
        .flat_map(|k| open_meter(Some(k), &SysRoots::default()).1)
        .collect();
    let adapters = tokenfab::backend::wgpu::list_adapters();
    // the adapter `--backend wgpu` picks: its peak read bandwidth, measured unless cached
    let gpu_bw = match (adapters.is_empty(), a.no_bandwidth) {
        (true, _) => None,
        (false, skip) => WgpuBackend::new(false).ok().and_then(|mut b| {
            let m = if skip {
                Measure::CachedOnly
            } else {
                Measure::Always
            };
            gpu_peak(&mut b, m)
        }),
    };
    // what `--backend cuda` would open: the GPU's name, or why not
    let cuda = match tokenfab::backend::candle::CandleBackend::cuda() {
        Ok(b) => format!(
            "{} (candle-core CUDA device 0)",
            tokenfab::backend::Backend::adapter_name(&b).unwrap_or_else(|| "a GPU".into())
        ),
        Err(e) => format!("unavailable: {e}"),
    };
    let table = super::energy::device_table(None)?;
    let est = table.find("cpu", &info.model).map(|r| r.id.clone());
    if a.json {
        let v = serde_json::json!({
            "cpu": info,
            "bandwidth": bw,
            "energy_sources": statuses,
            "energy_estimate_row": est,
            "wgpu": {"adapters": adapters, "bandwidth": gpu_bw},
            "cuda": cuda,
        });
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
        return Ok(());
    }
    let mut s = String::new();
    writeln!(
        s,
        "cpu        {} ({} logical cores, {})",
        info.model, info.logical_cores, info.isa
    )?;
    if let Some(r) = info.ram_bytes {
        writeln!(s, "memory     {:.1} GiB", r as f64 / (1u64 << 30) as f64)?;
    }
    match &bw {
        Some(b) => writeln!(
            s,
            "bandwidth  {:.1} GB/s peak read with {} threads ({}){}",
            b.gb_s,
            b.threads,
            b.method,
            saved_to.map_or(String::new(), |p| format!("; cached in {}", p.display()))
        )?,
        None => writeln!(s, "bandwidth  not measured (run without --no-bandwidth)")?,
    }
    if adapters.is_empty() {
        writeln!(
            s,
            "wgpu       no adapter (install a Vulkan/Metal/DX12 driver; mesa-vulkan-drivers gives a software one)"
        )?;
    }
    for a in &adapters {
        writeln!(
            s,
            "wgpu       {} ({}, {}, {}){}{}{}, max binding {} MiB, subgroups {}-{}",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            if a.shader_f16 { ", f16" } else { "" },
            if a.subgroup { ", subgroups" } else { "" },
            if a.timestamp_query {
                ", timestamps"
            } else {
                ""
            },
            a.max_storage_binding_mib,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1
        )?;
    }
    if let Some((gb_s, how)) = &gpu_bw {
        writeln!(
            s,
            "           peak read {gb_s:.1} GB/s ({how}) on the adapter --backend wgpu picks"
        )?;
    }
    writeln!(s, "cuda       {cuda}")?;
    writeln!(s, "energy sources:")?;
    for st in &statuses {
        writeln!(
            s,
            "  {:<18} {}  {}",
            st.kind.label(),
            if st.available {
                "available  "
            } else {
                "unavailable"
            },
            st.detail
        )?;
    }
    writeln!(
        s,
        "  {:<18} available    coefficient row {}",
        "estimated:model",
        est.unwrap_or_else(|| "none".into())
    )?;
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(())
}
