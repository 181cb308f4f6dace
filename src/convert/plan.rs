//! What `qgpu quantize` does to each tensor: the plan (a default format and ordered mix rules,
//! parsed once into types) and its resolution against a source's tensor list.

use std::collections::HashMap;

use super::preset::{llama_fallback, ModelFacts, Preset, TensorFacts, TensorRole};
use crate::loader::{GgmlType, Metadata, SourceTensor, TensorSource};
use crate::quant::weighted::has_weighted_search;
use crate::quant::Format;

/// Errors in a quantization plan, found before anything is written.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A `--format` that is neither a llama.cpp preset nor a format qgpu knows.
    #[error("unknown --format `{name}` (llama.cpp presets: {}; or one format for all weights: {})", Preset::known(), plain_formats())]
    UnknownTarget { name: String },
    /// A format name qgpu does not know.
    #[error("unknown weight format `{name}` (known: {})", crate::quant::known_formats())]
    UnknownFormat { name: String },
    /// A `--mix` item that is not `PATTERN=FORMAT` with a non-empty pattern.
    #[error("mix rule `{item}` is not PATTERN=FORMAT (e.g. token_embd=Q8_0, blk.*.ffn_down=Q6_K, edges=Q8_0)")]
    MixSyntax { item: String },
    /// A mix rule that names no quantizable tensor of the source (a typo, usually).
    #[error("mix rule `{pattern}` matches no quantizable tensor")]
    RuleMatchesNothing { pattern: String },
    /// A format GGUF has no type for (NF4, FP4) asked for a GGUF's tensor.
    #[error("{format} has no GGUF type: `--format {format}` on its own writes a bitsandbytes Hugging Face directory instead")]
    NoGgufType { format: Format },
    /// Calibration was asked for, but no tensor's format has an importance-weighted search.
    #[error("--calibrate needs Q4_0, Q4_1, IQ4_NL, Q4_K or Q6_K for some tensor; the plan quantizes none that way")]
    CalibrationUnused,
    /// A weight matrix with rows of length 0: nothing to quantize in blocks, and no model can
    /// use it.
    #[error("tensor `{tensor}` has dims {dims:?}: a weight matrix with empty rows cannot be quantized")]
    EmptyMatrix { tensor: String, dims: Vec<u64> },
}

/// Which tensor names a mix rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    /// `edges`: the token embedding and the output head (`token_embd.weight`, `output.weight`).
    Edges,
    /// A glob over the GGUF name, `*` matching any run of characters (dots included). It matches
    /// the whole name, or the name without its `.weight` suffix: `token_embd` and
    /// `blk.*.ffn_down` work as written.
    Glob { parts: Vec<String>, text: String },
}

impl NamePattern {
    pub fn parse(text: &str) -> Option<NamePattern> {
        if text.is_empty() || text.contains(char::is_whitespace) {
            return None;
        }
        if text == "edges" {
            return Some(NamePattern::Edges);
        }
        Some(NamePattern::Glob { parts: text.split('*').map(str::to_owned).collect(), text: text.to_owned() })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Edges => name == "token_embd.weight" || name == "output.weight",
            NamePattern::Glob { parts, .. } => {
                glob(parts, name) || name.strip_suffix(".weight").is_some_and(|short| glob(parts, short))
            }
        }
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamePattern::Edges => f.write_str("edges"),
            NamePattern::Glob { text, .. } => f.write_str(text),
        }
    }
}

/// `parts` are the pieces between `*`s: the first must be a prefix, the last a suffix, the
/// rest must appear in order in between.
fn glob(parts: &[String], name: &str) -> bool {
    let (first, rest) = parts.split_first().expect("split yields at least one part");
    let Some(mut tail) = name.strip_prefix(first.as_str()) else { return false };
    let Some((last, middle)) = rest.split_last() else { return tail.is_empty() };
    for part in middle {
        match tail.find(part.as_str()) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last.as_str())
}

/// One `PATTERN=FORMAT` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixRule {
    pub pattern: NamePattern,
    pub format: Format,
}

/// What to write: `format` for every quantizable tensor, or with a `preset` the type
/// llama.cpp's rules give each (`format` is then the preset's base type), unless a mix rule (the
/// first that matches) says otherwise; `calibrated` asks for the importance-weighted search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantPlan {
    pub format: Format,
    pub preset: Option<Preset>,
    pub rules: Vec<MixRule>,
    pub calibrated: bool,
}

/// The formats whose names are not also presets' (those mean the preset).
fn plain_formats() -> String {
    let plain = Format::ALL.into_iter().filter(|f| f.name().parse::<Preset>().is_err());
    plain.map(Format::name).collect::<Vec<_>>().join(", ")
}

fn parse_format(name: &str) -> Result<Format, PlanError> {
    name.trim().parse::<Format>().map_err(|_| PlanError::UnknownFormat { name: name.trim().to_owned() })
}

impl QuantPlan {
    pub fn new(format: Format) -> Self {
        QuantPlan { format, preset: None, rules: Vec::new(), calibrated: false }
    }

    pub fn preset(preset: Preset) -> Self {
        QuantPlan { preset: Some(preset), ..QuantPlan::new(preset.base()) }
    }

    /// The plan of `--format TARGET --mix RULES`. TARGET is a llama.cpp preset (Q4_K_M, and
    /// also Q4_0, Q8_0, Q6_K, ... which llama.cpp treats as presets too), else a format for all
    /// weights (Q4_K, F16, ...). `mix` is a comma-separated list of `PATTERN=FORMAT` (empty for
    /// none).
    pub fn parse(target: &str, mix: &str) -> Result<Self, PlanError> {
        let target = target.trim();
        let mut plan = match (target.parse::<Preset>(), target.parse::<Format>()) {
            (Ok(preset), _) => QuantPlan::preset(preset),
            (_, Ok(format)) => QuantPlan::new(format),
            _ => return Err(PlanError::UnknownTarget { name: target.to_owned() }),
        };
        for item in mix.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (pattern, format) = item.split_once('=').ok_or_else(|| PlanError::MixSyntax { item: item.to_owned() })?;
            let pattern = NamePattern::parse(pattern.trim()).ok_or_else(|| PlanError::MixSyntax { item: item.to_owned() })?;
            plan.rules.push(MixRule { pattern, format: parse_format(format)? });
        }
        Ok(plan)
    }

    /// The preset's or the format's name.
    pub fn name(&self) -> &'static str {
        self.preset.map_or(self.format.name(), Preset::name)
    }

    /// llama.cpp's `general.file_type` for the file this plan writes.
    pub fn file_type(&self) -> u32 {
        self.preset.map_or(super::llama_file_type(self.format), Preset::file_type)
    }

    /// Decides every tensor of `source`, with the model facts (layers, GQA) of its metadata.
    pub fn decide(&self, source: &dyn TensorSource) -> Result<Vec<Decision>, PlanError> {
        self.resolve_with(&source.tensors(), source.metadata())
    }

    /// [`QuantPlan::resolve_with`] without metadata: layers counted from the names, no GQA.
    pub fn resolve(&self, tensors: &[SourceTensor]) -> Result<Vec<Decision>, PlanError> {
        self.resolve_with(tensors, &Metadata::new())
    }

    /// Decides every tensor of `tensors`, checking that each mix rule matches something.
    pub fn resolve_with(&self, tensors: &[SourceTensor], metadata: &Metadata) -> Result<Vec<Decision>, PlanError> {
        let model = ModelFacts::new(metadata, tensors);
        let mut used = vec![false; self.rules.len()];
        let mut ordinals: HashMap<TensorRole, usize> = HashMap::new();
        if let Some(t) = tensors.iter().find(|t| is_quantizable(t) && t.dims[0] == 0) {
            return Err(PlanError::EmptyMatrix { tensor: t.name.clone(), dims: t.dims.clone() });
        }
        let decisions: Vec<Decision> = tensors
            .iter()
            .map(|t| {
                let kind = if is_quantizable(t) {
                    let k = t.dims[0] as usize;
                    let ordinal = ordinals.entry(TensorRole::parse(&t.name)).or_default();
                    let facts = TensorFacts::new(&t.name, k, *ordinal, &model);
                    *ordinal += 1;
                    let rule = self.rules.iter().position(|r| r.pattern.matches(&t.name));
                    let requested = match (rule, self.preset) {
                        (Some(i), _) => {
                            used[i] = true;
                            self.rules[i].format
                        }
                        (None, Some(preset)) => preset.choose(&facts, self.calibrated),
                        (None, None) => self.format,
                    };
                    // Presets fall back as llama.cpp does; qgpu's own table still guards the
                    // kernels' row multiple (an F16 row not a multiple of 8 → F32).
                    let written = match self.preset {
                        Some(_) => fallback(llama_fallback(requested, k), k),
                        None => fallback(requested, k),
                    };
                    let calibrated = self.calibrated && has_weighted_search(written);
                    DecisionKind::Quantize { requested, written, calibrated }
                } else {
                    DecisionKind::Float { written: float_format(t) }
                };
                Decision { tensor: t.clone(), kind }
            })
            .collect();
        if let Some(d) = decisions.iter().find(|d| !d.written().in_gguf()) {
            return Err(PlanError::NoGgufType { format: d.written() });
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(PlanError::RuleMatchesNothing { pattern: self.rules[i].pattern.to_string() });
        }
        let any_calibrated = decisions.iter().any(|d| matches!(d.kind, DecisionKind::Quantize { calibrated: true, .. }));
        if self.calibrated && !any_calibrated {
            return Err(PlanError::CalibrationUnused);
        }
        Ok(decisions)
    }
}

/// What happens to one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub tensor: SourceTensor,
    pub kind: DecisionKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    /// A weight matrix: `requested` by the plan, `written` after the row-length fallback.
    Quantize { requested: Format, written: Format, calibrated: bool },
    /// Norms, biases, position and token-type tables and anything not 2-D: kept in float.
    Float { written: Format },
}

impl Decision {
    pub fn written(&self) -> Format {
        match self.kind {
            DecisionKind::Quantize { written, .. } | DecisionKind::Float { written } => written,
        }
    }
}

/// A 2-D `.weight` that a linear layer or an embedding lookup multiplies by. Norms, position
/// embeddings and token-type tables stay in float: they are small, and their errors are not
/// averaged over a dot product.
pub fn is_quantizable(t: &SourceTensor) -> bool {
    let excluded = ["norm", "position_embd", "token_types"];
    t.dims.len() == 2 && t.dims[1] > 1 && t.name.ends_with(".weight") && !excluded.iter().any(|e| t.name.contains(e))
}

/// The format actually written for a matrix of rows `k` long, when `requested` needs another
/// row multiple: a K-quant goes to the 32-value format of the same role (Q4_K → IQ4_NL at the
/// same 4.5 bits, as Q3_K, Q2_K and IQ4_XS; Q5_K → Q5_1, Q6_K → Q8_0), a 32-value format to F16; F16 (and everything when `k` is not
/// a multiple of 8, which the kernels need) to F32.
pub fn fallback(requested: Format, k: usize) -> Format {
    let mut format = requested;
    while !k.is_multiple_of(format.k_multiple()) {
        format = match format {
            Format::Q4_K | Format::Q3_K | Format::Q2_K | Format::IQ4_XS => Format::IQ4_NL,
            Format::Q5_K => Format::Q5_1,
            Format::Q6_K => Format::Q8_0,
            Format::Q8_0 | Format::Q5_0 | Format::Q5_1 | Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL | Format::MXFP4 | Format::NF4 | Format::FP4 => {
                Format::F16
            }
            Format::F16 | Format::BF16 | Format::F32 => return Format::F32,
        };
    }
    format
}

/// Float tensors keep F16 when stored so and 2-D (a position table); all else becomes F32.
fn float_format(t: &SourceTensor) -> Format {
    if t.ggml_type == GgmlType::F16 && t.dims.len() >= 2 {
        Format::F16
    } else {
        Format::F32
    }
}
