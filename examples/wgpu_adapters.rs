//! Lists the wgpu adapters tokenfab can use and opens the one `--backend wgpu` would pick.
use tokenfab::backend::wgpu::{list_adapters, WgpuBackend};
use tokenfab::backend::Backend;

fn main() -> anyhow::Result<()> {
    for a in list_adapters() {
        println!("{}", serde_json::to_string(&a)?);
    }
    let b = WgpuBackend::new(false)?;
    println!("picked: {}", b.name());
    Ok(())
}
