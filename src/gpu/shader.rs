//! The WGSL sources, embedded at build time. Each module is the concatenation of whole files,
//! each of which is valid WGSL (helpers declare only functions, constants and bindings).

/// A shader module: one or more files from `shaders/`, concatenated in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderModuleId {
    Matvec,
    MatvecSubgroup,
    Matmul,
    Copy,
}

const WEIGHTS: &str = include_str!("../../shaders/weights.wgsl");
const MATVEC_IO: &str = include_str!("../../shaders/matvec_io.wgsl");

impl ShaderModuleId {
    pub const ALL: [ShaderModuleId; 4] =
        [ShaderModuleId::Matvec, ShaderModuleId::MatvecSubgroup, ShaderModuleId::Matmul, ShaderModuleId::Copy];

    /// The source files, in concatenation order.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            ShaderModuleId::Matvec => &[WEIGHTS, MATVEC_IO, include_str!("../../shaders/matvec.wgsl")],
            ShaderModuleId::MatvecSubgroup => &[WEIGHTS, MATVEC_IO, include_str!("../../shaders/matvec_subgroup.wgsl")],
            ShaderModuleId::Matmul => &[WEIGHTS, include_str!("../../shaders/matmul.wgsl")],
            ShaderModuleId::Copy => &[include_str!("../../shaders/copy.wgsl")],
        }
    }

    /// The module's source, files joined by newlines.
    pub fn source(self) -> String {
        self.files().join("\n")
    }

    pub fn name(self) -> &'static str {
        match self {
            ShaderModuleId::Matvec => "matvec.wgsl",
            ShaderModuleId::MatvecSubgroup => "matvec_subgroup.wgsl",
            ShaderModuleId::Matmul => "matmul.wgsl",
            ShaderModuleId::Copy => "copy.wgsl",
        }
    }

    /// Whether the module needs `wgpu::Features::SUBGROUP` to compile.
    pub fn needs_subgroups(self) -> bool {
        matches!(self, ShaderModuleId::MatvecSubgroup)
    }
}

/// How a kernel binds one resource; a kernel's bindings are numbered in slice order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    ReadOnly,
    ReadWrite,
    Uniform,
}

/// A compute entry point: its module, its name and its bind-group layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatvecLane,
    MatvecWorkgroup,
    MatvecSubgroup,
    Matmul,
    Copy,
}

/// weights.wgsl bindings 0-1, then x, y, params.
const LINEAR_BINDINGS: &[Binding] =
    &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite, Binding::Uniform];

impl Kernel {
    pub fn module(self) -> ShaderModuleId {
        match self {
            Kernel::MatvecLane | Kernel::MatvecWorkgroup => ShaderModuleId::Matvec,
            Kernel::MatvecSubgroup => ShaderModuleId::MatvecSubgroup,
            Kernel::Matmul => ShaderModuleId::Matmul,
            Kernel::Copy => ShaderModuleId::Copy,
        }
    }

    pub fn entry(self) -> &'static str {
        match self {
            Kernel::MatvecLane => "matvec_lane",
            Kernel::MatvecWorkgroup => "matvec_workgroup",
            Kernel::MatvecSubgroup => "matvec_subgroup",
            Kernel::Matmul => "matmul",
            Kernel::Copy => "copy",
        }
    }

    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Copy => &[Binding::ReadOnly, Binding::ReadWrite],
            _ => LINEAR_BINDINGS,
        }
    }
}
