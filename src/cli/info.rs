//! `qgpu info`: every adapter and the kernels qgpu picks on it.

use anyhow::Result;
use qgpu::gpu::{enumerate_adapters, BackendChoice, Capabilities};
use qgpu::ops::MatvecKernel;

pub fn info(backend: BackendChoice) -> Result<()> {
    let adapters = pollster::block_on(enumerate_adapters(backend));
    if adapters.is_empty() {
        anyhow::bail!(qgpu::gpu::GpuError::NoAdapter { backend: backend.to_string() });
    }
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let caps = Capabilities::of_adapter(adapter, qgpu::gpu::new_instance(backend).wgsl_language_features());
        println!("adapter {i}: {}", info.name);
        println!("  backend:       {:?}", info.backend);
        println!("  device type:   {:?}", info.device_type);
        println!("  vendor/device: {:#06x}/{:#06x}", info.vendor, info.device);
        println!("  driver:        {} ({})", info.driver, info.driver_info);
        println!(
            "  features:      shader-f16 {}, subgroups {} (size {}..{}), timestamp-query {}, dot4I8Packed {}",
            yes(caps.shader_f16),
            yes(caps.subgroups),
            caps.subgroup_min_size,
            caps.subgroup_max_size,
            yes(caps.timestamps),
            yes(caps.integer_dot)
        );
        println!("  all features:  {:?}", adapter.features());
        println!(
            "  limits:        storage binding {} MiB, buffer {} MiB, {} storage buffers/stage, {} invocations/workgroup, {} KiB workgroup memory, {} workgroups/dim",
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_buffer_size >> 20,
            limits.max_storage_buffers_per_shader_stage,
            limits.max_compute_invocations_per_workgroup,
            limits.max_compute_workgroup_storage_size >> 10,
            limits.max_compute_workgroups_per_dimension
        );
        let matvec = MatvecKernel::preferred(caps);
        let why = match matvec {
            MatvecKernel::Subgroup => "subgroups on a CPU device: one row a subgroup",
            MatvecKernel::SubgroupRows => "subgroups available: four rows a subgroup",
            MatvecKernel::Lane => "CPU device without subgroups: no barriers",
            MatvecKernel::Workgroup => "no subgroups",
            MatvecKernel::IntegerDot => "int8 activations",
        };
        println!("  qgpu kernels:  decode matvec/{} ({why}); prefill matmul (64x64 tiles); f32 accumulation everywhere", matvec.name());
        println!();
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
