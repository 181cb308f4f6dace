//! Every shader module parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL with
//! naga. No GPU needed: this is how we know the kernels compile for Metal and DX12.

use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use qgpu::gpu::{Kernel, ShaderModuleId};
use qgpu::quant::kv::KvType;
use qgpu::quant::Format;

fn parse(name: &str, source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)))
}

fn validate(name: &str, module: &naga::Module, caps: Capabilities) -> naga::valid::ModuleInfo {
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// What a browser offers: no f16 arithmetic and no subgroups, but `unpack2x16float`, which
/// WebGPU guarantees (naga guards it for old GL drivers).
fn web_caps() -> Capabilities {
    Capabilities::default() | Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

#[test]
fn every_file_prefix_validates() {
    // Each file is valid WGSL together with the files it follows; the first file of every
    // module (weights.wgsl, copy.wgsl) is valid entirely on its own.
    for id in ShaderModuleId::ALL {
        let files = id.files();
        for n in 1..=files.len() {
            let source = files[..n].join("\n");
            let module = parse(id.name(), &source);
            let caps = if id.needs_subgroups() { Capabilities::all() } else { web_caps() };
            validate(id.name(), &module, caps);
        }
    }
}

#[test]
fn modules_without_subgroups_validate_without_them() {
    for id in ShaderModuleId::ALL.into_iter().filter(|id| !id.needs_subgroups()) {
        let module = parse(id.name(), &id.source());
        validate(id.name(), &module, web_caps());
    }
    // And the subgroup module really needs them, so it is never handed to a browser.
    let id = ShaderModuleId::MatvecSubgroup;
    let module = parse(id.name(), &id.source());
    assert!(Validator::new(ValidationFlags::all(), web_caps()).validate(&module).is_err());
}

/// The override values the runtime sets for a kernel (FORMAT for every weight format).
fn constant_sets(kernel: Kernel) -> Vec<PipelineConstants> {
    let formats: Vec<u32> = Format::ALL.iter().map(|f| f.shader_code()).collect();
    let mut sets = Vec::new();
    match kernel {
        Kernel::Copy | Kernel::QuantizeX => {
            let mut c = PipelineConstants::default();
            c.insert("WORKGROUP".into(), 256.0);
            sets.push(c);
        }
        Kernel::Matmul | Kernel::Embed => {
            for format in formats {
                let mut c = PipelineConstants::default();
                c.insert("FORMAT".into(), format as f64);
                sets.push(c);
            }
        }
        Kernel::MatvecLane | Kernel::MatvecWorkgroup | Kernel::MatvecSubgroup => {
            for format in formats {
                let mut c = PipelineConstants::default();
                c.insert("FORMAT".into(), format as f64);
                c.insert("ROWS".into(), 8.0);
                c.insert("WORKGROUP".into(), 64.0);
                sets.push(c);
            }
        }
        // Q8_0, Q4_0 and Q4_1 weights only.
        Kernel::MatvecDot4 => {
            for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
                for rows in [1.0, 8.0] {
                    let mut c = PipelineConstants::default();
                    c.insert("FORMAT".into(), format.shader_code() as f64);
                    c.insert("ROWS".into(), rows);
                    c.insert("WORKGROUP".into(), 256.0);
                    sets.push(c);
                }
            }
        }
        // Every KV cache element type.
        Kernel::KvStore | Kernel::FlashSplit => {
            for ty in KvType::ALL {
                let mut c = PipelineConstants::default();
                c.insert("KV_TYPE".into(), ty.shader_code() as f64);
                sets.push(c);
            }
        }
        // Kernels without override constants.
        _ => sets.push(PipelineConstants::default()),
    }
    sets
}

#[test]
fn shader_codes_cover_every_format() {
    // FORMAT codes are 0..n with no gaps, so constant_sets reaches every case of load_group8,
    // and weights.wgsl names each code as Format::shader_code does.
    let mut codes: Vec<u32> = Format::ALL.map(Format::shader_code).to_vec();
    codes.sort_unstable();
    assert_eq!(codes, (0..Format::ALL.len() as u32).collect::<Vec<_>>());
    let weights = include_str!("../shaders/weights.wgsl");
    for format in Format::ALL {
        let line = format!("const FORMAT_{}: u32 = {}u;", format.name(), format.shader_code());
        assert!(weights.contains(&line), "weights.wgsl lacks `{line}`");
    }
    // load_group8 names every format but the one its `default` decodes (Q4_0), so a format
    // added without a case fails here rather than silently decoding as Q4_0.
    let decode = include_str!("../shaders/weights_super.wgsl");
    let body = &decode[decode.find("fn load_group8").expect("load_group8 is in weights_super.wgsl")..];
    // A case may list several selectors (`case FORMAT_NF4, FORMAT_FP4: {`).
    let selectors: Vec<&str> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("case "))
        .flat_map(|l| l.split(':').next().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    for format in Format::ALL.into_iter().filter(|&f| f != Format::Q4_0) {
        let name = format!("FORMAT_{}", format.name());
        assert!(selectors.contains(&name.as_str()), "load_group8 has no case for {format}");
    }
}

#[test]
fn every_kernel_translates_to_all_backends() {
    for kernel in Kernel::ALL {
        let id = kernel.module();
        let source = id.source();
        let module = parse(id.name(), &source);
        let info = validate(id.name(), &module, Capabilities::all());
        let entry = kernel.entry();
        for constants in constant_sets(kernel) {
            let stage = Some((naga::ShaderStage::Compute, entry));
            let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, stage, &constants)
                .unwrap_or_else(|e| panic!("{entry}: overrides: {e:?}"));
            let what = format!("{entry} {constants:?}");

            let spv_options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
            let spv_pipeline = naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.into() };
            let words = naga::back::spv::write_vec(&module, &info, &spv_options, Some(&spv_pipeline))
                .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e:?}"));
            assert_eq!(words[0], 0x0723_0203, "SPIR-V magic");

            let msl_options = naga::back::msl::Options { lang_version: (2, 4), ..Default::default() };
            let msl_pipeline = naga::back::msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, entry.into())),
                ..Default::default()
            };
            let (msl, _) = naga::back::msl::write_string(&module, &info, &msl_options, &msl_pipeline)
                .unwrap_or_else(|e| panic!("{what}: MSL: {e:?}"));
            assert!(msl.contains("kernel"), "{what}: MSL has no kernel");

            let hlsl_options = naga::back::hlsl::Options { shader_model: naga::back::hlsl::ShaderModel::V6_0, ..Default::default() };
            let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, entry.into())) };
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{what}: HLSL: {e:?}"));
            assert!(hlsl.contains("numthreads"), "{what}: HLSL has no compute entry");

            let version = if id.needs_subgroups() { naga::back::glsl::Version::Desktop(450) } else { naga::back::glsl::Version::new_gles(310) };
            let glsl_options = naga::back::glsl::Options { version, ..Default::default() };
            let glsl_pipeline = naga::back::glsl::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.into(), multiview: None };
            let mut glsl = String::new();
            naga::back::glsl::Writer::new(&mut glsl, &module, &info, &glsl_options, &glsl_pipeline, naga::proc::BoundsCheckPolicies::default())
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("{what}: GLSL: {e:?}"));
            assert!(glsl.contains("void main"), "{what}: GLSL has no main");
        }
    }
}

/// The integer-dot kernels use the packed_4x8_integer_dot_product builtins (the runtime offers
/// them only where the adapter or browser lists that language feature).
#[test]
fn integer_dot_modules_use_the_packed_builtins() {
    for id in ShaderModuleId::ALL {
        let source = id.source();
        let uses = source.contains("dot4I8Packed") || source.contains("pack4xI8");
        assert_eq!(uses, id.needs_integer_dot(), "{}", id.name());
    }
}
