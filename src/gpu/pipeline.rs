//! Pipelines, built once per (kernel, override constants) and cached on the context.

use super::shader::{Binding, Kernel, ShaderModuleId};
use super::{Context, GpuError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A value for one `override` constant of a kernel. All of qgpu's overrides are `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Constant {
    pub name: &'static str,
    pub value: u32,
}

/// What identifies a pipeline: the kernel (module + entry point) and its override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub constants: Vec<Constant>,
}

/// A built pipeline with the layout its bind groups must use.
pub struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) kernel: Kernel,
    /// Built without runtime checks: only [`Context::dispatch_bounded`] may dispatch it.
    pub(crate) trusted: bool,
}

impl Pipeline {
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
    /// Whether the pipeline runs without wgpu's runtime bounds checks.
    pub fn trusted(&self) -> bool {
        self.trusted
    }
}

/// Smallest storage buffer qgpu creates, in bytes.
pub(crate) const MIN_STORAGE_BINDING: u64 = 16;
/// Every uniform buffer is padded to this many bytes, enough for any kernel's parameters.
pub(crate) const MIN_UNIFORM_BINDING: u64 = 64;

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<ShaderModuleId, wgpu::ShaderModule>>,
    layouts: Mutex<HashMap<&'static [Binding], wgpu::BindGroupLayout>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl Context {
    /// The pipeline for `key`, built on first use. Shader and pipeline errors come back through
    /// a validation error scope as [`GpuError::Shader`].
    pub async fn pipeline(&self, key: &PipelineKey) -> Result<Arc<Pipeline>, GpuError> {
        if let Some(p) = self.pipelines.pipelines.lock().expect("pipeline cache poisoned").get(key) {
            return Ok(p.clone());
        }
        self.check_lost()?;
        let kernel = key.kernel;
        let shader = kernel.module().name();
        let entry = kernel.entry();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(kernel.module());
        let layout = self.bind_group_layout(kernel.bindings());
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let constants: Vec<(&str, f64)> = key.constants.iter().map(|c| (c.name, c.value as f64)).collect();
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        if let Some(error) = scope.pop().await {
            // Drop the module too: a module that failed once would fail every pipeline.
            self.pipelines.modules.lock().expect("pipeline cache poisoned").remove(&kernel.module());
            return Err(GpuError::Shader { shader, entry, message: error.to_string() });
        }
        let trusted = self.trusts_module(kernel.module());
        let built = Arc::new(Pipeline { pipeline, layout, kernel, trusted });
        self.pipelines.pipelines.lock().expect("pipeline cache poisoned").insert(key.clone(), built.clone());
        Ok(built)
    }

    /// Every pipeline built so far on this context.
    pub fn built_pipelines(&self) -> Vec<Arc<Pipeline>> {
        self.pipelines.pipelines.lock().expect("pipeline cache poisoned").values().cloned().collect()
    }

    /// Whether `id` is built without runtime checks on this context.
    fn trusts_module(&self, id: ShaderModuleId) -> bool {
        self.trust_host_bounds && id.host_bounded()
    }

    fn module(&self, id: ShaderModuleId) -> wgpu::ShaderModule {
        let mut modules = self.pipelines.modules.lock().expect("pipeline cache poisoned");
        modules
            .entry(id)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor { label: Some(id.name()), source: wgpu::ShaderSource::Wgsl(id.source().into()) };
                if !self.trusts_module(id) {
                    return self.device.create_shader_module(desc);
                }
                // No clamp on storage indices and no counter on loops. Integer division keeps
                // its guard: it costs nothing in these kernels' loops.
                let mut checks = wgpu::ShaderRuntimeChecks::unchecked();
                checks.int_div_checks = true;
                // SAFETY: a host-bounded module's indices stay within its bindings whenever the
                // sizes `dispatch_bounded` checks hold, and it is only dispatched through that
                // (`dispatch` refuses a trusted pipeline); its loops are bounded by uniforms.
                unsafe { self.device.create_shader_module_trusted(desc, checks) }
            })
            .clone()
    }

    fn bind_group_layout(&self, bindings: &'static [Binding]) -> wgpu::BindGroupLayout {
        let mut layouts = self.pipelines.layouts.lock().expect("pipeline cache poisoned");
        layouts
            .entry(bindings)
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: match b {
                            Binding::ReadOnly | Binding::ReadWrite => wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Storage { read_only: *b == Binding::ReadOnly },
                                has_dynamic_offset: false,
                                // One vec4: the widest element any kernel reads; buffers are padded to it.
                                min_binding_size: std::num::NonZeroU64::new(MIN_STORAGE_BINDING),
                            },
                            Binding::Uniform => wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: std::num::NonZeroU64::new(MIN_UNIFORM_BINDING),
                            },
                        },
                        count: None,
                    })
                    .collect();
                self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries })
            })
            .clone()
    }
}
