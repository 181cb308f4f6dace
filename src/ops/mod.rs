//! Operations on GPU tensors: validate shapes, pick a pipeline, bind, dispatch. Each op is
//! planned once into [`Dispatch`]es and replayed with [`Context::run`](crate::gpu::Context::run).

pub mod attention;
pub mod bias;
pub mod copy;
pub mod elementwise;
pub mod embed;
pub mod encoder_attention;
pub mod kv_cache;
pub mod layer_norm;
pub mod linear;
pub mod matrix_upload;
pub mod metrics;
pub mod norm;
mod plan;
pub mod probe;
mod tensor;
pub mod tune;

pub use attention::{attention_partials, plan_attention, plan_attention_rows, plan_rope, plan_rope_rows, split_keys, AttnArgs, AttnDims, AttnOptions, AttnWorkspace, RopeScaling, RopeStyle, RopeTable, DECODE_TOKENS};
pub use crate::quant::kv::KvType;
pub use kv_cache::{plan_kv_store, plan_kv_store_rows, KvCache};
pub use copy::CopyProbe;
pub use elementwise::{plan_add, plan_gelu_tanh_mul, plan_scale, plan_silu_mul, plan_softcap};
pub use bias::{plan_add_bias, plan_add_bias_gelu};
pub use embed::plan_embed;
pub use encoder_attention::{plan_encoder_attention, plan_mean_pool_normalize, GpuSpans, ENCODER_MAX_HEAD_DIM};
pub use layer_norm::plan_add_layer_norm;
pub use matrix_upload::MatrixUpload;
pub use metrics::{LogitMetrics, RowMetrics, NO_TARGET};
pub use linear::{cpu_matvec_rows, default_kernel, linear, plan_linear, plan_linear_parts, GpuMatrix, LinearKernel, LinearPlan, MatvecKernel, MatvecVariant, CPU_MATVEC_PASS_ROWS, CPU_SUBGROUP_PASS_ROWS, MATVEC_MAX_ROWS, MATVEC_WORKGROUPS};
pub use norm::plan_rms_norm;
pub use probe::FmaProbe;
pub use tune::{TuneKey, TuneTable};
pub use tensor::{GpuIds, GpuTensor, StepParams};
