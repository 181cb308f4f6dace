//! Adapter selection and the device, with its limits, features and pipeline cache.

use super::pipeline::PipelineCache;
use super::GpuError;
use std::sync::{Arc, Mutex};

/// Which graphics API to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BackendChoice {
    /// Whatever `WGPU_BACKEND` allows, else every backend; the best adapter wins.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The browser's WebGPU (wasm32 only).
    WebGpu,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
        }
    }

    /// Reads `QGPU_BACKEND`, defaulting to `Auto` when unset.
    pub fn from_env() -> Result<Self, GpuError> {
        match std::env::var("QGPU_BACKEND") {
            Ok(name) if !name.is_empty() => name.parse(),
            _ => Ok(BackendChoice::Auto),
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => BackendChoice::Auto,
            "vulkan" | "vk" => BackendChoice::Vulkan,
            "metal" | "mtl" => BackendChoice::Metal,
            "dx12" | "d3d12" => BackendChoice::Dx12,
            "gl" | "gles" | "opengl" => BackendChoice::Gl,
            "webgpu" | "browser" => BackendChoice::WebGpu,
            _ => return Err(GpuError::UnknownBackend { name: s.to_string() }),
        })
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// How to open a context.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    pub backend: BackendChoice,
    pub power: wgpu::PowerPreference,
    /// Caps the storage-binding size below the adapter's. Tests use it to force large tensors
    /// to be split; a browser user can use it to stay within a phone's limits.
    pub max_binding_size: Option<u64>,
    /// Features left off even where the adapter has them (`SUBGROUP`, `SHADER_F16`): natively,
    /// the device a browser's WebGPU gives, so the two can be compared on one adapter.
    pub without: wgpu::Features,
    /// Which shader modules keep wgpu's runtime checks.
    pub shader_checks: ShaderChecks,
}

/// Whether the kernels whose every buffer index the host bounds before dispatch
/// ([`ShaderModuleId::host_bounded`](super::ShaderModuleId::host_bounded)) run without wgpu's
/// runtime checks: no clamp on each storage index and no counter on each loop, which a CPU
/// adapter pays for on every weight. Every other module is always checked, and in a browser
/// WebGPU checks everything whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShaderChecks {
    /// Checked in debug builds (and so in `cargo test`), trusted in release builds.
    #[default]
    ByBuild,
    /// Every module checked, in any build.
    Checked,
    /// The host-bounded modules trusted, in any build (to test or time them in a debug build).
    Trusted,
}

impl ShaderChecks {
    /// Whether host-bounded modules are built without runtime checks.
    pub fn trusts_host_bounds(self) -> bool {
        match self {
            ShaderChecks::ByBuild => !cfg!(debug_assertions),
            ShaderChecks::Checked => false,
            ShaderChecks::Trusted => true,
        }
    }
}

/// What the device can do, as far as qgpu's kernel choice goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
    /// A CPU implementation (lavapipe, SwiftShader, WARP), where barriers cost most.
    pub cpu_device: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// The WGSL language feature `packed_4x8_integer_dot_product` (`dot4I8Packed`): always
    /// natively (naga polyfills it), in a browser only where `wgslLanguageFeatures` lists it.
    pub integer_dot: bool,
}

impl Capabilities {
    /// What `adapter` offers, given the WGSL language features of its instance; a context on
    /// it requests exactly these features.
    pub fn of_adapter(adapter: &wgpu::Adapter, language: wgpu::WgslLanguageFeatures) -> Self {
        let (features, info) = (adapter.features(), adapter.get_info());
        Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            cpu_device: info.device_type == wgpu::DeviceType::Cpu,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            integer_dot: language.contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct),
        }
    }
}

/// Whether a context's device is gone, and why: a handle that threads other than the one
/// using the context can read (a server's health check, say) without touching the device.
#[derive(Clone, Debug, Default)]
pub struct DeviceLoss(Arc<Mutex<Option<String>>>);

impl DeviceLoss {
    /// Why the device was lost, once it is.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
    fn set(&self, reason: String) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(reason);
        }
    }
}

/// A device and everything qgpu builds once per device.
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    caps: Capabilities,
    pub(crate) pipelines: PipelineCache,
    /// Host-bounded modules are built without runtime checks ([`ShaderChecks`]).
    pub(crate) trust_host_bounds: bool,
    lost: DeviceLoss,
    /// The readback buffer, kept between reads.
    pub(crate) staging: Mutex<Option<wgpu::Buffer>>,
}

impl Context {
    /// Opens the best adapter for `options`.
    pub async fn new(options: ContextOptions) -> Result<Self, GpuError> {
        let instance = new_instance(options.backend);
        let adapter = request_adapter(&instance, &options).await?;
        Self::open(adapter, &options, instance.wgsl_language_features()).await
    }

    /// Opens a device on `adapter` with the adapter's own limits and the features qgpu uses.
    pub async fn from_adapter(adapter: wgpu::Adapter, options: &ContextOptions) -> Result<Self, GpuError> {
        let language = new_instance(options.backend).wgsl_language_features();
        Self::open(adapter, options, language).await
    }

    async fn open(adapter: wgpu::Adapter, options: &ContextOptions, language: wgpu::WgslLanguageFeatures) -> Result<Self, GpuError> {
        let info = adapter.get_info();
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted & !options.without;
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_binding_size {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qgpu"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        let lost = DeviceLoss::default();
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| lost_flag.set(format!("{reason:?}: {message}")));
        // Errors outside any scope (there should be none) are logged rather than panicking.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| log::error!("uncaptured GPU error: {e}")));

        // What the device was opened with: the adapter's, less any features left off.
        let mut caps = Capabilities::of_adapter(&adapter, language);
        caps.shader_f16 &= features.contains(wgpu::Features::SHADER_F16);
        caps.subgroups &= features.contains(wgpu::Features::SUBGROUP);
        // The device may report a larger binding limit than we capped; our cap is what we plan with.
        let mut effective = device.limits();
        effective.max_storage_buffer_binding_size = effective.max_storage_buffer_binding_size.min(limits.max_storage_buffer_binding_size);
        Ok(Self { device, queue, info, limits: effective, caps, pipelines: PipelineCache::default(), trust_host_bounds: options.shader_checks.trusts_host_bounds(), lost, staging: Mutex::new(None) })
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }
    /// Whether host-bounded kernels run without wgpu's runtime checks on this context.
    pub fn trusts_host_bounds(&self) -> bool {
        self.trust_host_bounds
    }
    /// The largest buffer that may be bound as one storage binding.
    pub fn max_binding_size(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Releases the device and all its memory now (a page unloading a model, say). Every later
    /// call on this context fails with [`GpuError::DeviceLost`].
    pub fn destroy(&self) {
        self.device.destroy();
        self.lost.set("the context was destroyed".to_string());
    }

    /// A handle that reports the loss of this context's device from any thread.
    pub fn device_loss(&self) -> DeviceLoss {
        self.lost.clone()
    }

    /// Fails with [`GpuError::DeviceLost`] once the device is gone.
    pub fn check_lost(&self) -> Result<(), GpuError> {
        match self.lost.reason() {
            Some(reason) => Err(GpuError::DeviceLost { reason }),
            None => Ok(()),
        }
    }

    /// Waits until the GPU has finished all submitted work (native); a no-op on the web, where
    /// the browser drives the queue.
    pub fn wait_idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            self.check_lost()?;
            return Err(GpuError::Internal { operation: "poll", message: e.to_string() });
        }
        self.check_lost()
    }
}

async fn request_adapter(instance: &wgpu::Instance, options: &ContextOptions) -> Result<wgpu::Adapter, GpuError> {
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: options.power,
            ..Default::default()
        })
        .await
        .map_err(|_| GpuError::NoAdapter { backend: options.backend.to_string() })
}

/// An instance limited to the chosen backends.
pub fn new_instance(backend: BackendChoice) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backend.backends();
    wgpu::Instance::new(desc)
}

/// Every adapter of the chosen backends (native only; the browser offers one at a time).
#[cfg(not(target_arch = "wasm32"))]
pub async fn enumerate_adapters(backend: BackendChoice) -> Vec<wgpu::Adapter> {
    new_instance(backend).enumerate_adapters(backend.backends()).await
}
