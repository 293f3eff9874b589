//! The wgpu backend refuses what does not fit the adapter with an error, and keeps working.
//!
//! Its own test binary: the capacity check allocates device memory until the driver says no
//! (on an 80 GB GPU, all of it, for a moment), which made the other GPU tests fail to open
//! their devices or hang when it ran beside them in tests/backend_ops.rs (seen on the H100).

use tokenfab::backend::wgpu::WgpuBackend;
use tokenfab::backend::Backend;

#[test]
fn wgpu_should_refuse_what_does_not_fit() {
    let mut b = WgpuBackend::new(false).expect("a wgpu adapter is required");
    let err = b.reserve(1 << 49, 1 << 49).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
    let err = b.alloc(1 << 40).unwrap_err().to_string();
    assert!(err.contains("largest buffer"), "{err}");
    // and the backend still works afterwards
    let x = b.alloc(4).unwrap();
    b.write(x, 0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut out = [0f32; 4];
    b.read(x, 0, &mut out).unwrap();
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
}
