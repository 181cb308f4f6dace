//! llama.cpp's file-type presets (`llama-quantize … Q4_K_M`): a base type plus per-tensor
//! promotions by role and layer, as `llama_tensor_get_type` in llama.cpp's
//! `src/llama-quant.cpp` chooses them for dense models, and its row-length fallback table.
//!
//! Not modelled, as qgpu runs none of them: mixture-of-experts rules (`n_expert`), Falcon's
//! and 70B-class exceptions, and the IQ1/IQ2/IQ3 presets.

use crate::loader::{Metadata, SourceTensor};
use crate::quant::Format;

/// A llama.cpp file type (`enum llama_ftype`) that qgpu can write.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    IQ4_XS,
    IQ4_NL,
}

impl Preset {
    pub const ALL: [Preset; 16] = [
        Preset::Q2_K,
        Preset::Q3_K_S,
        Preset::Q3_K_M,
        Preset::Q3_K_L,
        Preset::Q4_K_S,
        Preset::Q4_K_M,
        Preset::Q5_K_S,
        Preset::Q5_K_M,
        Preset::Q6_K,
        Preset::Q8_0,
        Preset::Q4_0,
        Preset::Q4_1,
        Preset::Q5_0,
        Preset::Q5_1,
        Preset::IQ4_XS,
        Preset::IQ4_NL,
    ];

    /// (name, base type, `general.file_type`), after `llama_ftype_get_default_type` and llama.h.
    const fn info(self) -> (&'static str, Format, u32) {
        match self {
            Preset::Q2_K => ("Q2_K", Format::Q2_K, 10),
            Preset::Q3_K_S => ("Q3_K_S", Format::Q3_K, 11),
            Preset::Q3_K_M => ("Q3_K_M", Format::Q3_K, 12),
            Preset::Q3_K_L => ("Q3_K_L", Format::Q3_K, 13),
            Preset::Q4_K_S => ("Q4_K_S", Format::Q4_K, 14),
            Preset::Q4_K_M => ("Q4_K_M", Format::Q4_K, 15),
            Preset::Q5_K_S => ("Q5_K_S", Format::Q5_K, 16),
            Preset::Q5_K_M => ("Q5_K_M", Format::Q5_K, 17),
            Preset::Q6_K => ("Q6_K", Format::Q6_K, 18),
            Preset::Q8_0 => ("Q8_0", Format::Q8_0, 7),
            Preset::Q4_0 => ("Q4_0", Format::Q4_0, 2),
            Preset::Q4_1 => ("Q4_1", Format::Q4_1, 3),
            Preset::Q5_0 => ("Q5_0", Format::Q5_0, 8),
            Preset::Q5_1 => ("Q5_1", Format::Q5_1, 9),
            Preset::IQ4_XS => ("IQ4_XS", Format::IQ4_XS, 30),
            Preset::IQ4_NL => ("IQ4_NL", Format::IQ4_NL, 25),
        }
    }

    pub const fn name(self) -> &'static str {
        self.info().0
    }
    /// The type of every weight no rule promotes.
    pub const fn base(self) -> Format {
        self.info().1
    }
    /// llama.cpp's `LLAMA_FTYPE_MOSTLY_*` value, written as `general.file_type`.
    pub const fn file_type(self) -> u32 {
        self.info().2
    }

    /// The preset a file's `general.file_type` names, if it is one of these.
    pub fn from_file_type(file_type: u32) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.file_type() == file_type)
    }

    pub fn known() -> String {
        Preset::ALL.map(Preset::name).join(", ")
    }

    /// The preset's type for one weight matrix, before the row-length fallback.
    /// `calibrated` is llama.cpp's `has_imatrix`.
    pub fn choose(self, t: &TensorFacts, calibrated: bool) -> Format {
        use Format as F;
        use Preset as P;
        let base = self.base();
        let (i, n) = (t.layer, t.n_layers);
        let first_eighth = i < n / 8;
        match t.role {
            // The output head (and a tied embedding, which is the same matrix) gets Q6_K, or
            // Q8_0 when its rows do not fit the base type's blocks.
            TensorRole::Output | TensorRole::TokenEmbd if t.role == TensorRole::Output || t.tied_embeddings => {
                if !t.row_len.is_multiple_of(base.block_size()) || base == F::Q8_0 {
                    F::Q8_0
                } else {
                    F::Q6_K
                }
            }
            // llama.cpp counts attn_qkv with attn_v (its own attn_qkv branch is never reached).
            TensorRole::AttnV | TensorRole::AttnQkv => match self {
                P::Q2_K if t.gqa >= 4 => F::Q4_K,
                P::Q2_K => F::Q3_K,
                P::Q3_K_M if i < 2 => F::Q5_K,
                P::Q3_K_M => F::Q4_K,
                P::Q3_K_L => F::Q5_K,
                P::IQ4_NL | P::IQ4_XS if t.gqa >= 4 => F::Q5_K,
                P::Q4_K_M | P::Q5_K_M if use_more_bits(i, n) => F::Q6_K,
                P::Q4_K_S if i < 4 => F::Q5_K,
                _ => base,
            },
            TensorRole::FfnDown => match self {
                P::Q2_K => F::Q3_K,
                P::Q3_K_M if i < n / 16 => F::Q5_K,
                P::Q3_K_M => F::Q4_K,
                P::Q3_K_L => F::Q5_K,
                P::Q4_K_M | P::Q5_K_M if use_more_bits(i, n) => F::Q6_K,
                P::IQ4_NL | P::IQ4_XS if first_eighth && !calibrated => F::Q5_K,
                P::Q4_K_S if first_eighth => F::Q5_K,
                // With an importance matrix only, so that an uncalibrated run stays as before.
                P::Q4_0 if first_eighth && calibrated => F::Q4_1,
                P::Q5_0 if first_eighth && calibrated => F::Q5_1,
                _ => base,
            },
            TensorRole::AttnOutput => match self {
                P::Q2_K => F::Q3_K,
                P::Q3_K_M => F::Q4_K,
                P::Q3_K_L => F::Q5_K,
                _ => base,
            },
            _ => base,
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Preset::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s)).ok_or(())
    }
}

/// llama.cpp's layer pattern for the *_M presets: the first and last eighth of the layers, and
/// every third layer in between.
pub fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    // i128: `n` may be one more than a `blk.N` from the file, and `7 * n` must not overflow.
    let (i, n) = (layer as i128, n_layers as i128);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// llama.cpp's fallback (`tensor_type_fallback`) for rows not a multiple of the block: each
/// 256-value type to a 32-value one, and F16 when even that does not fit.
pub fn llama_fallback(format: Format, row_len: usize) -> Format {
    if row_len.is_multiple_of(format.block_size()) {
        return format;
    }
    let next = match format {
        Format::Q2_K | Format::Q3_K => Format::Q4_0,
        Format::IQ4_XS => Format::IQ4_NL,
        Format::Q4_K => Format::Q5_0,
        Format::Q5_K => Format::Q5_1,
        Format::Q6_K => Format::Q8_0,
        // llama.cpp stops with an error here; F16 is what it uses for the rarer odd shapes.
        _ => Format::F16,
    };
    if row_len.is_multiple_of(next.block_size()) {
        next
    } else {
        Format::F16
    }
}

/// What a weight is for, parsed once from its GGUF name as llama.cpp's `tensor_get_category`
/// does (substring tests, in its order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorRole {
    AttnQ,
    AttnK,
    AttnV,
    AttnQkv,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    TokenEmbd,
    Output,
    Other,
}

impl TensorRole {
    pub fn parse(name: &str) -> TensorRole {
        if name == "output.weight" {
            return TensorRole::Output;
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return TensorRole::TokenEmbd;
        }
        let by_substring = [
            ("attn_qkv.weight", TensorRole::AttnQkv),
            ("attn_v.weight", TensorRole::AttnV),
            ("attn_k.weight", TensorRole::AttnK),
            ("attn_q.weight", TensorRole::AttnQ),
            ("attn_output.weight", TensorRole::AttnOutput),
            ("ffn_up", TensorRole::FfnUp),
            ("ffn_gate", TensorRole::FfnGate),
            ("ffn_down", TensorRole::FfnDown),
        ];
        by_substring.into_iter().find(|(s, _)| name.contains(s)).map_or(TensorRole::Other, |(_, r)| r)
    }

    pub const fn name(self) -> &'static str {
        match self {
            TensorRole::AttnQ => "attn_q",
            TensorRole::AttnK => "attn_k",
            TensorRole::AttnV => "attn_v",
            TensorRole::AttnQkv => "attn_qkv",
            TensorRole::AttnOutput => "attn_output",
            TensorRole::FfnGate => "ffn_gate",
            TensorRole::FfnUp => "ffn_up",
            TensorRole::FfnDown => "ffn_down",
            TensorRole::TokenEmbd => "token_embd",
            TensorRole::Output => "output",
            TensorRole::Other => "other",
        }
    }
}

/// The `N` of a `blk.N.` name.
pub fn layer_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Model-wide facts the rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    /// `{arch}.block_count`, else one more than the highest `blk.N`.
    pub n_layers: usize,
    /// How many attn_v-like tensors there are (llama.cpp's `n_attention_wv`).
    pub n_attn_v: usize,
    /// Query heads per KV head (`head_count / head_count_kv`), 1 when unknown.
    pub gqa: usize,
    /// No `output.weight`: the embedding doubles as the output head.
    pub tied_embeddings: bool,
}

impl ModelFacts {
    pub fn new(metadata: &Metadata, tensors: &[SourceTensor]) -> ModelFacts {
        let arch = metadata.get_str("general.architecture").unwrap_or_default();
        let key = |k: &str| metadata.get_u32(&format!("{arch}.{k}")).ok().map(|v| v as usize);
        let from_names = tensors.iter().filter_map(|t| layer_index(&t.name)).max().map_or(0, |m| m.saturating_add(1)); // `blk.N` is from the file
        let n_attn_v = tensors.iter().filter(|t| matches!(TensorRole::parse(&t.name), TensorRole::AttnV | TensorRole::AttnQkv)).count();
        let gqa = match (key("attention.head_count"), key("attention.head_count_kv")) {
            (Some(h), Some(kv)) if kv > 0 => (h / kv).max(1),
            _ => 1,
        };
        ModelFacts {
            n_layers: key("block_count").unwrap_or(from_names),
            n_attn_v,
            gqa,
            tied_embeddings: !tensors.iter().any(|t| t.name == "output.weight"),
        }
    }
}

/// One weight matrix as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorFacts {
    pub role: TensorRole,
    /// The tensor's position for the layer rules (see [`TensorFacts::new`]).
    pub layer: usize,
    /// The count `layer` is out of.
    pub n_layers: usize,
    pub gqa: usize,
    pub tied_embeddings: bool,
    /// `dims[0]`, the length of a row.
    pub row_len: usize,
}

impl TensorFacts {
    /// llama.cpp counts attn_v tensors out of `n_attention_wv` and ffn tensors out of the layer
    /// count, in file order; for a dense model that is the `blk.N` index, which is used here so
    /// that a source listing tensors in another order gets the same types. `ordinal` (the
    /// tensor's position among those of its role) stands in for a name without `blk.N`.
    pub fn new(name: &str, row_len: usize, ordinal: usize, model: &ModelFacts) -> TensorFacts {
        let role = TensorRole::parse(name);
        let n_layers = match role {
            TensorRole::AttnV | TensorRole::AttnQkv => model.n_attn_v,
            _ => model.n_layers,
        };
        TensorFacts {
            role,
            layer: layer_index(name).unwrap_or(ordinal),
            n_layers,
            gqa: model.gqa,
            tied_embeddings: model.tied_embeddings,
            row_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(role: TensorRole, layer: usize, n_layers: usize, row_len: usize) -> TensorFacts {
        TensorFacts { role, layer, n_layers, gqa: 1, tied_embeddings: false, row_len }
    }

    #[test]
    fn more_bits_pattern_for_18_and_32_layers() {
        let on = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(on(18), [0, 1, 4, 7, 10, 13, 15, 16, 17]);
        assert_eq!(on(32), [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }

    #[test]
    fn roles_parse_like_llama_cpp() {
        for (name, role) in [
            ("blk.3.attn_q.weight", TensorRole::AttnQ),
            ("blk.3.attn_k.weight", TensorRole::AttnK),
            ("blk.3.attn_v.weight", TensorRole::AttnV),
            ("blk.3.attn_qkv.weight", TensorRole::AttnQkv),
            ("blk.3.attn_output.weight", TensorRole::AttnOutput),
            ("blk.3.ffn_gate.weight", TensorRole::FfnGate),
            ("blk.3.ffn_up.weight", TensorRole::FfnUp),
            ("blk.3.ffn_down.weight", TensorRole::FfnDown),
            ("token_embd.weight", TensorRole::TokenEmbd),
            ("output.weight", TensorRole::Output),
            ("blk.3.attn_q_norm.weight", TensorRole::Other),
            ("output_norm.weight", TensorRole::Other),
        ] {
            assert_eq!(TensorRole::parse(name), role, "{name}");
        }
        assert_eq!(layer_index("blk.17.ffn_down.weight"), Some(17));
        assert_eq!(layer_index("token_embd.weight"), None);
    }

    #[test]
    fn q4_k_m_promotes_v_and_down_in_more_bits_layers() {
        for i in 0..32 {
            let want = if use_more_bits(i, 32) { Format::Q6_K } else { Format::Q4_K };
            assert_eq!(Preset::Q4_K_M.choose(&facts(TensorRole::AttnV, i, 32, 4096), false), want);
            assert_eq!(Preset::Q4_K_M.choose(&facts(TensorRole::FfnDown, i, 32, 11008), false), want);
            assert_eq!(Preset::Q4_K_M.choose(&facts(TensorRole::AttnQ, i, 32, 4096), false), Format::Q4_K);
            assert_eq!(Preset::Q4_K_S.choose(&facts(TensorRole::AttnV, i, 32, 4096), false), if i < 4 { Format::Q5_K } else { Format::Q4_K });
        }
    }

    #[test]
    fn output_and_tied_embedding() {
        let out = facts(TensorRole::Output, 0, 0, 4096);
        assert_eq!(Preset::Q4_0.choose(&out, false), Format::Q6_K);
        assert_eq!(Preset::Q8_0.choose(&out, false), Format::Q8_0);
        // Rows that do not fit the base type's blocks.
        assert_eq!(Preset::Q4_K_M.choose(&TensorFacts { row_len: 640, ..out }, false), Format::Q8_0);
        let embd = facts(TensorRole::TokenEmbd, 0, 0, 4096);
        assert_eq!(Preset::Q4_K_M.choose(&embd, false), Format::Q4_K);
        assert_eq!(Preset::Q4_K_M.choose(&TensorFacts { tied_embeddings: true, ..embd }, false), Format::Q6_K);
    }

    #[test]
    fn gqa_and_calibration_conditions() {
        let v = TensorFacts { gqa: 4, ..facts(TensorRole::AttnV, 5, 32, 4096) };
        assert_eq!(Preset::Q2_K.choose(&v, false), Format::Q4_K);
        assert_eq!(Preset::Q2_K.choose(&TensorFacts { gqa: 2, ..v }, false), Format::Q3_K);
        assert_eq!(Preset::IQ4_XS.choose(&v, false), Format::Q5_K);
        assert_eq!(Preset::IQ4_XS.choose(&TensorFacts { gqa: 1, ..v }, false), Format::IQ4_XS);
        let down = facts(TensorRole::FfnDown, 1, 32, 4096);
        assert_eq!(Preset::IQ4_NL.choose(&down, false), Format::Q5_K);
        assert_eq!(Preset::IQ4_NL.choose(&down, true), Format::IQ4_NL);
        assert_eq!(Preset::Q4_0.choose(&down, false), Format::Q4_0);
        assert_eq!(Preset::Q4_0.choose(&down, true), Format::Q4_1);
    }

    #[test]
    fn fallback_table() {
        for (from, to) in [
            (Format::Q2_K, Format::Q4_0),
            (Format::Q3_K, Format::Q4_0),
            (Format::IQ4_XS, Format::IQ4_NL),
            (Format::Q4_K, Format::Q5_0),
            (Format::Q5_K, Format::Q5_1),
            (Format::Q6_K, Format::Q8_0),
        ] {
            assert_eq!(llama_fallback(from, 576), to);
            assert_eq!(llama_fallback(from, 512), from);
            assert_eq!(llama_fallback(from, 72), Format::F16);
        }
        assert_eq!(llama_fallback(Format::Q4_0, 72), Format::F16);
        assert_eq!(llama_fallback(Format::Q4_0, 96), Format::Q4_0);
    }

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        assert_eq!("q4_k_m".parse::<Preset>(), Ok(Preset::Q4_K_M));
        assert_eq!("Q4_K".parse::<Preset>(), Err(()));
    }
}
