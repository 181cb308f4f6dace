//! `qgpu inspect`: what a model is, what it weighs, how much GPU memory it needs, and whether
//! qgpu can run it on this adapter. Reads only the metadata and tensor table: no weight is
//! uploaded.

use anyhow::Result;
use clap::Args;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::loader::hf::TOKENIZER_JSON_KEY;
use qgpu::loader::{GgmlType, Metadata, OptionalKey, SourceTensor, TensorSource};
use qgpu::model::bert::{BertConfig, BertMemory, BertOptions};
use qgpu::model::limits;
use qgpu::ops::{KvCache, KvType};
use qgpu::model::llama::{activation_shapes, kv_cache_bytes, LlamaConfig, LlamaOptions, MemoryUse};
use qgpu::model::ModelError;
use qgpu::ops::GpuMatrix;
use qgpu::quant::Format;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A GGUF file or a Hugging Face model directory.
    model: PathBuf,
    /// KV cache positions to size GPU memory for (default: what `qgpu run` uses, 2048 capped
    /// at the trained context).
    #[arg(long)]
    context: Option<usize>,
    /// KV cache type to size GPU memory for: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value_t = KvType::default())]
    kv_type: KvType,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Which of qgpu's models would run the file, by the library's own checks.
enum Kind {
    // Boxed: a decoder's config is several times an encoder's.
    Llama(Box<LlamaConfig>, LlamaOptions),
    Bert(BertConfig),
}

/// Shape of the network, from the model's config where qgpu runs it, else from metadata.
#[derive(Default)]
struct Hyper {
    trained_context: Option<usize>,
    layers: Option<usize>,
    width: Option<usize>,
    ffn: Option<usize>,
    heads: Option<usize>,
    kv_heads: Option<usize>,
    head_dim: Option<usize>,
}

/// Tensors of one ggml type.
#[derive(Default)]
struct TypeRow {
    tensors: usize,
    elements: u64,
    bytes: u64,
}

/// GPU bytes at the chosen context, by purpose.
struct Memory {
    /// KV cache positions; `None` for an encoder, which has no KV cache.
    context: Option<usize>,
    weights: u64,
    kv_cache: u64,
    /// `None` where qgpu has no model for the architecture to estimate them from.
    activations: Option<u64>,
    /// The largest single buffer besides the weights (activation or one layer's K cache).
    largest_buffer: u64,
}

pub fn inspect(args: InspectArgs, options: ContextOptions) -> Result<()> {
    let file = super::ModelSource::open(&args.model)?;
    let source = file.source();
    let meta = source.metadata();
    let tensors = source.tensors();
    let architecture = meta.get_str("general.architecture").optional()?.map(str::to_owned);

    let requested_context = args.context.unwrap_or(LlamaOptions::default().context);
    let kind = classify(source, requested_context, args.kv_type);
    let hyper = match &kind {
        Ok(Kind::Llama(c, _)) => Hyper {
            trained_context: Some(c.trained_context),
            layers: Some(c.layers),
            width: Some(c.dim),
            ffn: Some(c.ffn),
            heads: Some(c.heads),
            kv_heads: Some(c.kv_heads),
            head_dim: Some(c.head_dim),
        },
        Ok(Kind::Bert(c)) => Hyper {
            trained_context: Some(c.context),
            layers: Some(c.layers),
            width: Some(c.dim),
            ffn: Some(c.ffn),
            heads: Some(c.heads),
            kv_heads: Some(c.heads),
            head_dim: Some(c.head_dim),
        },
        Err(_) => architecture.as_deref().map(|a| hyper_from_metadata(meta, a)).transpose()?.unwrap_or_default(),
    };

    let mut types: BTreeMap<&'static str, TypeRow> = BTreeMap::new();
    let mut no_kernel: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    let (mut elements, mut bytes, mut weights) = (0u64, 0u64, 0u64);
    for t in &tensors {
        let n = t.n_elements().unwrap_or(u64::MAX);
        let b = t.ggml_type.size_of(n).unwrap_or(u64::MAX);
        let row = types.entry(t.ggml_type.name()).or_default();
        row.tensors += 1;
        row.elements = row.elements.saturating_add(n);
        row.bytes = row.bytes.saturating_add(b);
        elements = elements.saturating_add(n);
        bytes = bytes.saturating_add(b);
        weights = weights.saturating_add(upload_bytes(t, b));
        if upload_format(t).is_none() {
            no_kernel.entry(t.ggml_type.name()).or_default().push(&t.name);
        }
    }
    let mut types: Vec<(&str, TypeRow)> = types.into_iter().collect();
    types.sort_by_key(|t| std::cmp::Reverse(t.1.bytes));

    let memory = match &kind {
        Ok(Kind::Llama(c, o)) => {
            let m = MemoryUse::estimate(c, o, weights);
            let f32s = |rows: usize, cols: usize| rows as u64 * cols as u64 * 4;
            let k_cache = KvCache::buffer_bytes(o.kv_type, o.context, c.kv_heads, c.head_dim);
            let largest = activation_shapes(c, o).iter().map(|&(_, r, k)| f32s(r, k)).chain([k_cache]).max().unwrap_or(0);
            Memory { context: Some(o.context), weights, kv_cache: m.kv_cache, activations: Some(m.activations), largest_buffer: largest }
        }
        Ok(Kind::Bert(c)) => {
            let capacity = BertOptions::default().capacity(c);
            let activations = BertMemory::activations_for(c, capacity);
            let largest = capacity as u64 * c.dim.max(c.ffn) as u64 * 4;
            Memory { context: None, weights, kv_cache: 0, activations: Some(activations), largest_buffer: largest }
        }
        // No model to ask: the KV cache a decoder of this shape would need, capped at the
        // trained context as LlamaOptions::resolve does, and no activation estimate.
        Err(_) => {
            let context = requested_context.min(hyper.trained_context.unwrap_or(usize::MAX)).max(1);
            // The counts are the file's own, unchecked: no estimate past qgpu's budgets.
            let kv = hyper
                .layers
                .zip(hyper.kv_heads.zip(hyper.head_dim))
                .filter(|&(l, (kv, hd))| l <= limits::MAX_LAYERS && kv <= limits::MAX_HEADS && hd <= limits::MAX_WIDTH && context <= limits::MAX_CONTEXT)
                .map(|(l, (kv, hd))| kv_cache_bytes(l, context, kv, hd, args.kv_type));
            Memory { context: kv.map(|_| context), weights, kv_cache: kv.unwrap_or(0), activations: None, largest_buffer: 0 }
        }
    };

    // Problems that no adapter fixes come first; the adapter's limits are checked after.
    let mut problems: Vec<(&str, String)> = Vec::new();
    if let Err(e) = &kind {
        let what = if matches!(e, ModelError::UnsupportedArchitecture { .. }) { "architecture" } else { "config" };
        problems.push((what, e.to_string()));
    }
    for (ty, names) in &no_kernel {
        problems.push(("tensor_type", format!("{} tensor(s) are {ty}, which qgpu has no kernel for: {}", names.len(), name_list(names))));
    }
    let adapter = match pollster::block_on(Context::new(options)) {
        Ok(ctx) => {
            let binding = ctx.max_binding_size();
            for t in &tensors {
                let row = row_bytes(t);
                if row > binding {
                    problems.push(("binding_limit", format!("tensor `{}`: one row is {row} bytes, over the adapter's binding limit of {binding}", t.name)));
                }
            }
            if memory.largest_buffer > binding {
                problems.push((
                    "binding_limit",
                    format!("an activation or KV cache buffer of {} bytes exceeds the adapter's binding limit of {binding}; try a smaller --context", memory.largest_buffer),
                ));
            }
            let info = ctx.adapter_info();
            Ok(json!({
                "name": info.name,
                "backend": format!("{:?}", info.backend),
                "max_binding_size": binding,
                "max_buffer_size": ctx.limits().max_buffer_size,
            }))
        }
        Err(e) => Err(e.to_string()),
    };
    // wgpu reports no total memory size, so the total cannot be checked against one.
    let runnable = if !problems.is_empty() {
        Some(false)
    } else if adapter.is_ok() {
        Some(true)
    } else {
        None
    };

    let tokenizer = tokenizer_info(meta, &kind, &tensors)?;
    let m = &memory;
    let report = json!({
        "path": args.model.display().to_string(),
        "container": match file { super::ModelSource::Gguf(_) => "gguf", super::ModelSource::Split(_) => "gguf-split", super::ModelSource::Hf(_) => "huggingface" },
        "architecture": architecture,
        "name": meta.get_str("general.name").optional()?,
        "runs_as": match &kind { Ok(Kind::Llama(..)) => Some("decoder (qgpu run)"), Ok(Kind::Bert(_)) => Some("encoder (qgpu embed)"), Err(_) => None },
        "parameters": elements,
        "trained_context": hyper.trained_context,
        "layers": hyper.layers,
        "width": hyper.width,
        "ffn": hyper.ffn,
        "heads": hyper.heads,
        "kv_heads": hyper.kv_heads,
        "head_dim": hyper.head_dim,
        "tokenizer": tokenizer,
        "tensor_types": types.iter().map(|(ty, r)| json!({
            "type": ty,
            "tensors": r.tensors,
            "elements": r.elements,
            "bytes": r.bytes,
            "share": share(r.bytes, bytes),
        })).collect::<Vec<_>>(),
        "tensors": tensors.len(),
        "total_bytes": bytes,
        "bits_per_weight": if elements == 0 { 0.0 } else { bytes as f64 * 8.0 / elements as f64 },
        "gpu_memory": {
            "context": memory.context,
            "weights": m.weights,
            "kv_cache": m.kv_cache,
            "activations": m.activations,
            "total": m.weights + m.kv_cache + m.activations.unwrap_or(0),
            "largest_buffer": memory.largest_buffer,
        },
        "adapter": adapter.as_ref().ok(),
        "adapter_check": match &adapter { Ok(_) => "done".to_string(), Err(e) => format!("skipped: {e}") },
        "runnable": runnable,
        "problems": problems.iter().map(|(kind, message)| json!({ "kind": kind, "message": message })).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, &memory);
    }
    Ok(())
}

/// The llama decoder's check first, then the BERT encoder's; the first error that is not
/// "wrong architecture" is the one that says what is wrong.
fn classify(source: &dyn TensorSource, context: usize, kv_type: KvType) -> Result<Kind, ModelError> {
    match LlamaConfig::from_source(source) {
        Ok(c) => {
            let options = LlamaOptions { context, kv_type, ..Default::default() }.resolve(&c);
            Ok(Kind::Llama(Box::new(c), options))
        }
        Err(llama @ ModelError::UnsupportedArchitecture { .. }) => match BertConfig::from_source(source) {
            Ok(c) => Ok(Kind::Bert(c)),
            Err(ModelError::UnsupportedArchitecture { .. }) => Err(llama),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// llama.cpp's `{arch}.*` keys, for an architecture qgpu does not run.
fn hyper_from_metadata(meta: &Metadata, arch: &str) -> Result<Hyper> {
    let get = |k: &str| meta.get_usize(&format!("{arch}.{k}")).optional();
    let heads = get("attention.head_count")?;
    let width = get("embedding_length")?;
    let head_dim = match get("attention.key_length")? {
        Some(d) => Some(d),
        None => width.zip(heads).and_then(|(w, h)| w.checked_div(h)),
    };
    Ok(Hyper {
        trained_context: get("context_length")?,
        layers: get("block_count")?,
        width,
        ffn: get("feed_forward_length")?,
        heads,
        kv_heads: get("attention.head_count_kv")?.or(heads),
        head_dim,
    })
}

/// The format a tensor is uploaded in, as the loaders do it: its own where a kernel exists,
/// but F32 for vectors (norms and biases, read as f32); `None` without a kernel.
fn upload_format(t: &SourceTensor) -> Option<Format> {
    let own = Format::from_ggml_type(t.ggml_type.id())?;
    Some(if t.dims.len() == 1 { Format::F32 } else { own })
}

/// GPU bytes of a tensor of `stored` file bytes (its own bytes when it cannot be uploaded).
fn upload_bytes(t: &SourceTensor, stored: u64) -> u64 {
    match upload_format(t) {
        Some(Format::F32) if t.ggml_type != GgmlType::F32 => t.n_elements().unwrap_or(u64::MAX).saturating_mul(4),
        _ => stored,
    }
}

/// The smallest binding the tensor can be split into: one row (a vector is one row).
fn row_bytes(t: &SourceTensor) -> u64 {
    let Some(format) = upload_format(t) else { return 0 };
    let k = t.dims.first().copied().unwrap_or(0) as usize;
    if t.dims.len() == 1 {
        return k as u64 * 4;
    }
    GpuMatrix::row_binding_bytes(format, k)
}

fn tokenizer_info(meta: &Metadata, kind: &Result<Kind, ModelError>, tensors: &[SourceTensor]) -> Result<Value> {
    let mut model = meta.get_str("tokenizer.ggml.model").optional()?.map(str::to_owned);
    let mut vocab = meta.get_array("tokenizer.ggml.tokens").optional()?.map(|a| a.len());
    // A Hugging Face BERT keeps its whole tokenizer.json.
    if let Some(text) = meta.get_str(TOKENIZER_JSON_KEY).optional()? {
        if let Ok(doc) = serde_json::from_str::<Value>(text) {
            model = model.or_else(|| doc["model"]["type"].as_str().map(str::to_owned));
            vocab = vocab.or_else(|| doc["model"]["vocab"].as_object().map(|v| v.len()));
        }
    }
    let vocab = vocab.or(match kind {
        Ok(Kind::Llama(c, _)) => Some(c.vocab),
        Ok(Kind::Bert(c)) => Some(c.vocab),
        Err(_) => tensors.iter().find(|t| t.name == "token_embd.weight").and_then(|t| t.dims.get(1)).map(|&n| n as usize),
    });
    Ok(json!({
        "model": model,
        "pre": meta.get_str("tokenizer.ggml.pre").optional()?,
        "vocab": vocab,
        "chat_template": meta.contains_key("tokenizer.chat_template"),
    }))
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// The first few names, then how many more.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 4;
    let mut s = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s += &format!(" and {} more", names.len() - SHOWN);
    }
    s
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The report as text: the same values as the JSON.
fn print_table(r: &Value, memory: &Memory) {
    let s = |v: &Value| match v {
        Value::Null => "?".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    println!("model:        {} ({}, {})", s(&r["path"]), s(&r["container"]), s(&r["name"]));
    println!("architecture: {}{}", s(&r["architecture"]), r["runs_as"].as_str().map(|k| format!(", runs as {k}")).unwrap_or_default());
    let params = r["parameters"].as_u64().unwrap_or(0);
    println!("parameters:   {:.1} M ({params})", params as f64 / 1e6);
    println!(
        "shape:        {} layers, width {}, FFN {}, {} heads / {} KV heads of {}, trained context {}",
        s(&r["layers"]),
        s(&r["width"]),
        s(&r["ffn"]),
        s(&r["heads"]),
        s(&r["kv_heads"]),
        s(&r["head_dim"]),
        s(&r["trained_context"])
    );
    let t = &r["tokenizer"];
    println!(
        "tokenizer:    {} (pre-tokenizer {}), vocabulary {}, chat template {}",
        s(&t["model"]),
        s(&t["pre"]),
        s(&t["vocab"]),
        if t["chat_template"].as_bool() == Some(true) { "yes" } else { "no" }
    );
    println!();
    println!("{:<8} {:>8} {:>14} {:>14} {:>7}", "type", "tensors", "elements", "bytes", "share");
    for row in r["tensor_types"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:>8} {:>14} {:>14} {:>6.1}%",
            s(&row["type"]),
            s(&row["tensors"]),
            s(&row["elements"]),
            s(&row["bytes"]),
            row["share"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    println!(
        "{:<8} {:>8} {:>14} {:>14}   {:.3} bits per weight",
        "total",
        s(&r["tensors"]),
        params,
        s(&r["total_bytes"]),
        r["bits_per_weight"].as_f64().unwrap_or(0.0)
    );
    println!();
    let m = memory;
    match m.context {
        Some(n) => println!("GPU memory at context {n}:"),
        None => println!("GPU memory:"),
    }
    println!("  weights      {:>11}  as uploaded: file bytes, vectors as F32", mib(m.weights));
    match (m.context, s(&r["layers"]), s(&r["kv_heads"]), s(&r["head_dim"])) {
        (Some(n), l, kv, hd) => println!("  KV cache     {:>11}  2 x {l} layers x {n} positions x {kv} KV heads x {hd} x 4 bytes (f32)", mib(m.kv_cache)),
        (None, ..) if m.activations.is_some() => println!("  KV cache     {:>11}  none (an encoder)", mib(m.kv_cache)),
        (None, ..) => println!("  KV cache     {:>11}  unknown: the metadata lacks the shape", "?"),
    }
    match m.activations {
        Some(a) => println!("  activations  {:>11}  estimate: the f32 buffers of one prompt chunk or batch", mib(a)),
        None => println!("  activations  {:>11}  not estimated: no qgpu model for this architecture", "?"),
    }
    println!("  total        {:>11}{}", mib(m.weights + m.kv_cache + m.activations.unwrap_or(0)), if m.activations.is_none() { "  without activations" } else { "" });
    println!();
    match (&r["adapter"], r["adapter_check"].as_str()) {
        (Value::Object(a), _) => println!(
            "adapter:      {} ({}): binding limit {}, buffer limit {} (wgpu reports no total memory)",
            s(&a["name"]),
            s(&a["backend"]),
            mib(a["max_binding_size"].as_u64().unwrap_or(0)),
            mib(a["max_buffer_size"].as_u64().unwrap_or(0))
        ),
        (_, why) => println!("adapter:      check {}", why.unwrap_or("skipped")),
    }
    let verdict = match r["runnable"].as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "no problem found, but the adapter check was skipped",
    };
    println!("runnable:     {verdict}");
    for p in r["problems"].as_array().into_iter().flatten() {
        println!("  - {}", s(&p["message"]));
    }
}
