//! `cargo bench --bench matvec`: decode matvec (1 activation row) for 4096×4096 and 576×1536 in
//! every format: time per call, GB/s, and the share of the copy bandwidth measured in the same
//! run on the same adapter. Set QGPU_BENCH_ROWS=1,4 or QGPU_BENCH_REPEATS=50 to vary it.

use qgpu::bench::{run_suite, Shape};
use qgpu::gpu::{Context, ContextOptions};
use qgpu::quant::Format;

fn main() {
    env_logger::init();
    let rows: Vec<usize> = std::env::var("QGPU_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let repeats = std::env::var("QGPU_BENCH_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let ctx = match pollster::block_on(Context::new(ContextOptions::default())) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no GPU adapter: {e}");
            std::process::exit(1);
        }
    };
    let shapes = [Shape { n: 4096, k: 4096 }, Shape { n: 576, k: 1536 }];
    if let Err(e) = run_suite(&ctx, &Format::ALL, &shapes, &rows, None, repeats) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
