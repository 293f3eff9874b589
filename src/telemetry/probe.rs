//! What this machine is and how fast its memory is: CPU model, cores, RAM, instruction set,
//! energy sources (and why others are unavailable), and the peak memory read bandwidth measured
//! with a multithreaded streaming read — cached on disk so `run` and `bench` can report MBU
//! without re-measuring.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Static facts about the CPU and memory.
#[derive(Clone, Debug, Serialize)]
pub struct CpuInfo {
    pub model: String,
    pub logical_cores: usize,
    pub ram_bytes: Option<u64>,
    pub isa: String,
}

pub fn cpu_info() -> CpuInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let ram_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    CpuInfo {
        model,
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ram_bytes,
        isa: crate::quant::Isa::detect().name().to_string(),
    }
}

/// A measured peak read bandwidth.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bandwidth {
    /// `cpu` (later also wgpu/cuda adapters).
    pub device: String,
    pub device_name: String,
    pub threads: usize,
    pub gb_s: f64,
    pub method: String,
    /// Seconds since the Unix epoch.
    pub measured_at: u64,
}

/// Streams `bytes` of memory with `threads` threads `reps` times; the best run's GB/s.
pub fn measure_cpu_read_bandwidth(threads: usize, bytes: usize, reps: usize) -> f64 {
    use rayon::prelude::*;
    let words = bytes / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(p) => p,
        Err(_) => return 0.0,
    };
    let chunk = (words / (threads.max(1) * 16)).max(4096);
    let mut best = Duration::MAX;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let x = pool.install(|| {
            buf.par_chunks(chunk)
                .map(|c| c.iter().fold(0u64, |a, &b| a ^ b))
                .reduce(|| 0, |a, b| a ^ b)
        });
        std::hint::black_box(x);
        best = best.min(t0.elapsed());
    }
    (words * 8) as f64 / best.as_secs_f64() / 1e9
}

fn cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tokenfab").join("probe.json"))
}

/// Cached bandwidth measurements, keyed by device, name and threads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProbeCache {
    pub bandwidth: Vec<Bandwidth>,
}

impl ProbeCache {
    pub fn load() -> ProbeCache {
        cache_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Writes the cache atomically (temp file + rename); returns where.
    pub fn save(&self) -> std::io::Result<PathBuf> {
        let p =
            cache_path().ok_or_else(|| std::io::Error::other("no cache directory (HOME unset)"))?;
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(p)
    }

    pub fn find(&self, device: &str, name: &str, threads: usize) -> Option<&Bandwidth> {
        self.bandwidth
            .iter()
            .find(|b| b.device == device && b.device_name == name && b.threads == threads)
    }

    pub fn upsert(&mut self, b: Bandwidth) {
        self.bandwidth.retain(|x| {
            !(x.device == b.device && x.device_name == b.device_name && x.threads == b.threads)
        });
        self.bandwidth.push(b);
    }
}

/// Memory-bandwidth utilization in % of `peak_gb_s`, or `None` when it cannot be true: no
/// peak, or a run that read faster than the "peak" (more than 5 % above: a cached peak
/// measured while the machine was busy — one such run printed "MBU 532 %"). Callers say why
/// with [`impossible_peak`].
pub fn utilization(achieved_gb_s: f64, peak_gb_s: f64) -> Option<f64> {
    (peak_gb_s > 0.0 && achieved_gb_s <= 1.05 * peak_gb_s)
        .then(|| 100.0 * achieved_gb_s / peak_gb_s)
}

/// The note for a run faster than its peak (see [`utilization`]), `None` otherwise.
pub fn impossible_peak(achieved_gb_s: f64, peak_gb_s: f64) -> Option<String> {
    (peak_gb_s > 0.0 && achieved_gb_s > 1.05 * peak_gb_s).then(|| {
        format!(
            "MBU not shown: this run read {achieved_gb_s:.1} GB/s, above the cached peak of {peak_gb_s:.1} GB/s, which must have been measured while the machine was busy; re-measure with `tokenfab probe`"
        )
    })
}

/// When to measure a peak bandwidth rather than take the cached one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    CachedOnly,
    IfMissing,
    Always,
}

/// The peak read bandwidth of a GPU backend's adapter: cached, or measured and cached.
pub fn gpu_peak(
    backend: &mut dyn crate::backend::Backend,
    measure: Measure,
) -> Option<(f64, String)> {
    let name = backend.adapter_name()?;
    let mut cache = ProbeCache::load();
    if measure != Measure::Always {
        if let Some(b) = cache.find("wgpu", &name, 0) {
            return Some((b.gb_s, format!("measured by tokenfab probe on {name}")));
        }
    }
    if measure == Measure::CachedOnly {
        return None;
    }
    let gb_s = backend.measure_peak_bandwidth()?.ok()?;
    cache.upsert(Bandwidth {
        device: "wgpu".into(),
        device_name: name.clone(),
        threads: 0,
        gb_s,
        method: "WGSL read kernel, 16-byte loads, best of 3 x 8 passes".into(),
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let _ = cache.save();
    Some((gb_s, format!("measured on {name}")))
}

pub fn cpu_peak(threads: usize, measure: bool) -> Option<(f64, String)> {
    let info = cpu_info();
    let mut cache = ProbeCache::load();
    if let Some(b) = cache.find("cpu", &info.model, threads) {
        return Some((
            b.gb_s,
            format!("measured by tokenfab probe, {} threads", b.threads),
        ));
    }
    if !measure {
        return None;
    }
    let b = measure_cpu(threads, &info);
    let g = b.gb_s;
    cache.upsert(b);
    let _ = cache.save();
    Some((g, format!("measured now, {threads} threads")))
}

pub const CPU_METHOD: &str = "best of 5 multithreaded streaming reads of a 512 MiB buffer";

pub fn measure_cpu(threads: usize, info: &CpuInfo) -> Bandwidth {
    let gb_s = measure_cpu_read_bandwidth(threads, 512 << 20, 5);
    Bandwidth {
        device: "cpu".into(),
        device_name: info.model.clone(),
        threads,
        gb_s,
        method: CPU_METHOD.into(),
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utilization_above_the_peak_is_not_a_number_to_print() {
        assert_eq!(utilization(11.0, 22.0), Some(50.0));
        // within 5 % of the peak: measurement noise, shown
        assert!((utilization(22.5, 22.0).unwrap() - 102.27).abs() < 0.01);
        // the "MBU 532 %" run: 12.2 GB/s read against a peak cached at 2.3 GB/s
        assert_eq!(utilization(12.2, 2.3), None);
        assert!(impossible_peak(12.2, 2.3).unwrap().contains("re-measure"));
        assert_eq!(impossible_peak(11.0, 22.0), None);
        assert_eq!(utilization(1.0, 0.0), None);
    }

    use super::*;

    #[test]
    fn bandwidth_measurement_is_positive_and_cache_round_trips() {
        let g = measure_cpu_read_bandwidth(2, 8 << 20, 2);
        assert!(g > 0.1, "{g}");
        let mut c = ProbeCache::default();
        let b = |t, g| Bandwidth {
            device: "cpu".into(),
            device_name: "X".into(),
            threads: t,
            gb_s: g,
            method: "m".into(),
            measured_at: 1,
        };
        c.upsert(b(2, 10.0));
        c.upsert(b(1, 5.0));
        c.upsert(b(2, 12.0));
        assert_eq!(c.bandwidth.len(), 2);
        assert_eq!(c.find("cpu", "X", 2).unwrap().gb_s, 12.0);
        let json = serde_json::to_string(&c).unwrap();
        let back: ProbeCache = serde_json::from_str(&json).unwrap();
        assert_eq!(back.find("cpu", "X", 1).unwrap().gb_s, 5.0);
        let info = cpu_info();
        assert!(info.logical_cores >= 1 && !info.model.is_empty());
    }
}
