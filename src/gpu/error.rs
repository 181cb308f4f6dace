//! Errors of the GPU layer. Validation errors, out-of-memory and device loss come back from
//! wgpu's error scopes and callbacks; each is turned into one of these instead of a panic.

/// Something the GPU, the driver or wgpu refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter matched the requested backend (or none exists, e.g. no Vulkan driver).
    #[error("no GPU adapter found for backend {backend}; on Debian, `apt-get install mesa-vulkan-drivers` gives a software Vulkan device")]
    NoAdapter { backend: String },
    /// The backend name given by flag or `QGPU_BACKEND` is not one qgpu knows.
    #[error("unknown backend `{name}` (expected one of: auto, vulkan, metal, dx12, gl, webgpu)")]
    UnknownBackend { name: String },
    /// The adapter refused to create a device with its own limits and the chosen features.
    #[error("adapter `{adapter}` refused to create a device: {message}")]
    RequestDevice { adapter: String, message: String },
    /// A shader failed to compile or a pipeline failed validation.
    #[error("shader `{shader}` entry `{entry}` failed to build: {message}")]
    Shader { shader: &'static str, entry: &'static str, message: String },
    /// A command failed wgpu validation; `operation` names what qgpu was doing.
    #[error("GPU validation error during {operation}: {message}")]
    Validation { operation: &'static str, message: String },
    /// The device ran out of memory while doing `operation`.
    #[error("GPU out of memory during {operation}")]
    OutOfMemory { operation: &'static str },
    /// An internal driver error during `operation`.
    #[error("GPU internal error during {operation}: {message}")]
    Internal { operation: &'static str, message: String },
    /// The device was lost (driver reset, GPU removed, tab backgrounded); recreate the context.
    #[error("GPU device lost: {reason}")]
    DeviceLost { reason: String },
    /// A buffer that must be bound whole is larger than one storage binding may be.
    #[error("{what} needs a binding of {bytes} bytes; this adapter allows at most {limit}")]
    BindingTooLarge { what: &'static str, bytes: u64, limit: u64 },
    /// A buffer larger than the adapter's maximum buffer size.
    #[error("{what} needs a buffer of {bytes} bytes; this adapter allows at most {limit}")]
    BufferTooLarge { what: &'static str, bytes: u64, limit: u64 },
    /// Reading a buffer back to the host failed.
    #[error("reading `{what}` back from the GPU failed: {message}")]
    Readback { what: &'static str, message: String },
    /// A buffer bound to a kernel holds fewer bytes than the planned parameters make it index.
    #[error("kernel `{kernel}` binding {binding} needs {needed} bytes for the planned shape but its buffer holds {size}")]
    BindingTooSmall { kernel: &'static str, binding: u32, needed: u64, size: u64 },
    /// A view into a buffer would start at an offset the adapter cannot bind.
    #[error("{what} would start at byte {offset}, not a multiple of the adapter's storage offset alignment {alignment}")]
    MisalignedOffset { what: &'static str, offset: u64, alignment: u64 },
    /// A dispatch needs more workgroups than the adapter allows in two dimensions.
    #[error("{what} needs {workgroups} workgroups; this adapter allows at most {limit} per dimension")]
    TooManyWorkgroups { what: &'static str, workgroups: u64, limit: u32 },
}

impl GpuError {
    /// Turns an error popped from a wgpu error scope into a typed error.
    pub(crate) fn from_scope(operation: &'static str, error: wgpu::Error) -> Self {
        match error {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory { operation },
            wgpu::Error::Validation { description, .. } => GpuError::Validation { operation, message: description },
            wgpu::Error::Internal { description, .. } => GpuError::Internal { operation, message: description },
        }
    }
}
