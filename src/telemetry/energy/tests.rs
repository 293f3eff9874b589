//! Meters against fake sysfs trees in a temp dir: RAPL domains, wraparound, unreadable files;
//! batteries discharging and not; source selection.

use super::*;
use std::fs;
use std::path::Path;

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

fn zone(root: &Path, name: &str, label: &str, uj: u64, max: u64) {
    let z = root.join(name);
    write(&z.join("name"), &format!("{label}\n"));
    write(&z.join("energy_uj"), &format!("{uj}\n"));
    write(&z.join("max_energy_range_uj"), &format!("{max}\n"));
}

#[test]
fn rapl_sums_packages_and_dram_and_handles_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    zone(root, "intel-rapl:0", "package-0", 1_000_000, 10_000_000);
    zone(root, "intel-rapl:0:0", "core", 500_000, 10_000_000); // inside the package: ignored
    zone(root, "intel-rapl:0:1", "dram", 200_000, 5_000_000);
    let mut m = rapl::RaplMeter::open(root).unwrap();
    assert!(
        m.describe().contains("package-0 + dram"),
        "{}",
        m.describe()
    );
    assert_eq!(m.read_j().unwrap(), 0.0);
    // +2 J package, +0.5 J dram, core ignored
    write(&root.join("intel-rapl:0/energy_uj"), "3000000");
    write(&root.join("intel-rapl:0:1/energy_uj"), "700000");
    write(&root.join("intel-rapl:0:0/energy_uj"), "999999999");
    assert!((m.read_j().unwrap() - 2.5).abs() < 1e-9);
    // the package counter wraps: 3.0 J -> max 10.0 J -> 0.25 J is +7.25 J
    write(&root.join("intel-rapl:0/energy_uj"), "250000");
    assert!((m.read_j().unwrap() - 9.75).abs() < 1e-9);
    let domains = m.domains_j();
    assert_eq!(domains[0].0, "package-0");
    assert!((domains[0].1 - 9.25).abs() < 1e-9);
    assert_eq!(rapl::delta_uj(9, 2, 10), 3);
    assert_eq!(rapl::delta_uj(2, 9, 10), 7);
}

#[test]
fn rapl_errors_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let e = rapl::RaplMeter::open(&dir.path().join("missing"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no RAPL"), "{e}");
    let e = rapl::RaplMeter::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("no RAPL zones"), "{e}");
    // an unreadable counter: permission errors name the file and the fix
    let p = dir.path().join("intel-rapl:0/energy_uj");
    let err = io_error(
        &p,
        std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        "root-only since Linux 5.10",
    );
    let msg = err.to_string();
    assert!(
        msg.contains("permission denied") && msg.contains("energy_uj") && msg.contains("5.10"),
        "{msg}"
    );
    // and for real where the test is not root (root reads anything)
    zone(dir.path(), "intel-rapl:0", "package-0", 1, 10);
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(true);
    if !is_root {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
        let e = rapl::RaplMeter::open(dir.path()).err().unwrap();
        assert!(matches!(e, EnergyError::Permission { .. }), "{e}");
    }
    // garbage in a counter is an error naming the file
    write(&p, "not-a-number");
    let e = rapl::RaplMeter::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("energy_uj") && e.contains("not a number"), "{e}");
}

#[test]
fn battery_counts_energy_only_while_discharging() {
    let dir = tempfile::tempdir().unwrap();
    let bat = dir.path().join("BAT0");
    write(&dir.path().join("AC/online"), "1");
    write(&bat.join("status"), "Charging\n");
    write(&bat.join("energy_now"), "50000000"); // 50 Wh
    let e = battery::BatteryMeter::open(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not discharging"), "{e}");
    write(&bat.join("status"), "Discharging\n");
    write(&bat.join("power_now"), "12500000");
    let mut m = battery::BatteryMeter::open(dir.path()).unwrap();
    assert_eq!(m.power_w(), Some(12.5));
    write(&bat.join("energy_now"), "49990000"); // -10 mWh = 36 J
    assert!((m.read_j().unwrap() - 36.0).abs() < 1e-6);
    // charge x voltage where energy_now is absent
    let dir2 = tempfile::tempdir().unwrap();
    let b = dir2.path().join("BAT1");
    write(&b.join("status"), "Discharging");
    write(&b.join("charge_now"), "4000000"); // 4 Ah
    write(&b.join("voltage_now"), "12000000"); // 12 V
    let mut m = battery::BatteryMeter::open(dir2.path()).unwrap();
    write(&b.join("charge_now"), "3999000"); // -1 mAh at 12 V = 12 mWh = 43.2 J
    assert!((m.read_j().unwrap() - 43.2).abs() < 1e-6);
    let none = tempfile::tempdir().unwrap();
    assert!(battery::BatteryMeter::open(none.path())
        .err()
        .unwrap()
        .to_string()
        .contains("no battery"));
}

#[test]
fn open_meter_falls_through_sources_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let roots = SysRoots {
        powercap: dir.path().join("powercap"),
        power_supply: dir.path().join("power_supply"),
    };
    zone(&roots.powercap, "intel-rapl:0", "package-0", 5, 100);
    let (m, statuses) = open_meter(None, &roots);
    let m = m.expect("RAPL should open");
    assert_eq!(m.kind(), SourceKind::Rapl);
    // NVML was tried first (absent here: no NVIDIA driver) unless this machine has one
    assert_eq!(statuses.last().unwrap().kind, SourceKind::Rapl);
    assert!(statuses.last().unwrap().available);
    // asking for the battery only: unavailable, with the reason
    let (m, statuses) = open_meter(Some(SourceKind::Battery), &roots);
    assert!(m.is_none());
    assert_eq!(statuses.len(), 1);
    assert!(
        !statuses[0].available && statuses[0].detail.contains("power_supply"),
        "{:?}",
        statuses[0]
    );
    assert_eq!(SourceKind::parse("rapl"), Some(SourceKind::Rapl));
    assert_eq!(SourceKind::Estimate.label(), "estimated:model");
}

/// `run -t 1000` on a 2-core machine once charged 2000 W of static power (issue: every claim
/// proven): static power follows the cores that can run, not the threads asked for.
#[test]
fn static_power_is_charged_for_the_cores_not_the_threads_asked_for() {
    use super::select::{energy_model, EnergyOptions};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = EnergyOptions {
        device: Some("cpu-amd-epyc-vcpu".into()),
        ..EnergyOptions::default()
    };
    let per_thread = energy_model(&opts, 1, None)
        .unwrap()
        .device
        .p_static_w_per_thread
        .unwrap();
    assert!(
        (2.0..3.0).contains(&per_thread),
        "{per_thread} W per thread"
    );
    let many = energy_model(&opts, 1000, None).unwrap();
    assert_eq!(many.threads, cores);
    assert!((many.p_static_w - per_thread * cores as f64).abs() < 1e-9);
    let one = energy_model(&opts, 1, None).unwrap();
    assert!((one.p_static_w - per_thread).abs() < 1e-9);
}
