//! `cargo bench --bench attention`: the flash-attention pass alone at depth (decode and a
//! 128-token prefill chunk), for the head layouts of real models, beside qgpu's copy probe.
//! QGPU_ATTN_DEPTHS=0,512,2048 and QGPU_ATTN_KV=f16,q8_0 choose the cases; QGPU_ATTN_SHAPES
//! names layouts (smollm2-135m, gemma3-270m, llama3-8b); QGPU_ATTN_TOKENS=1,128 the queries, QGPU_ATTN_REPEATS the timed calls.

use qgpu::bench::attention::{time_attention, ATTN_SHAPES};
use qgpu::bench::probes::copy_bandwidth;
use qgpu::bench::Stopwatch;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::ops::KvType;

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn main() {
    env_logger::init();
    let ctx = match pollster::block_on(Context::new(ContextOptions::default())) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no GPU adapter: {e}");
            std::process::exit(1);
        }
    };
    let watch = Stopwatch::new(&ctx, false);
    let copy = pollster::block_on(copy_bandwidth(&ctx, &watch, 64 << 20, 5)).expect("copy probe");
    println!("adapter: {}; copy probe {:.2} GB/s ({})", ctx.adapter_info().name, copy.rate() / 1e9, watch.clock().name());
    println!("{:<14} {:>5} {:>6} {:>6} {:>10} {:>10} {:>10} {:>8} {:>7}", "shape", "kv", "depth", "tokens", "median ms", "min ms", "KV MiB", "GB/s", "% copy");
    let depths: Vec<usize> = list("QGPU_ATTN_DEPTHS", "0,512,2048").iter().map(|d| d.parse().expect("depth")).collect();
    let tokens: Vec<usize> = list("QGPU_ATTN_TOKENS", "1,128").iter().map(|d| d.parse().expect("tokens")).collect();
    let kv: Vec<KvType> = list("QGPU_ATTN_KV", "f16").iter().map(|k| k.parse().expect("kv type")).collect();
    let shapes = list("QGPU_ATTN_SHAPES", "smollm2-135m");
    let repeats = std::env::var("QGPU_ATTN_REPEATS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    for shape in ATTN_SHAPES.iter().filter(|(name, _)| shapes.iter().any(|s| s == name)) {
        for &ty in &kv {
            for &t in &tokens {
                for &d in &depths {
                    match pollster::block_on(time_attention(&ctx, &watch, *shape, ty, d, t, 128 << 20, (2, repeats))) {
                        Ok(c) => println!(
                            "{:<14} {:>5} {:>6} {:>6} {:>10.3} {:>10.3} {:>10.2} {:>8.2} {:>6.1}%",
                            c.shape,
                            c.kv_type.name(),
                            c.depth,
                            c.tokens,
                            c.timing.median * 1e3,
                            c.timing.min * 1e3,
                            c.kv_bytes as f64 / (1 << 20) as f64,
                            c.bytes_per_second() / 1e9,
                            100.0 * c.bytes_per_second() / copy.rate()
                        ),
                        Err(e) => println!("{} {} depth {d} tokens {t}: {e}", shape.0, ty.name()),
                    }
                }
            }
        }
    }
}
