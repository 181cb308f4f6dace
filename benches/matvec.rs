//! `cargo bench --bench matvec`: the `qgpu bench` suite through the same library code.
//! Quick by default (SmolLM2's small shapes, decode and 64-row prefill); QGPU_BENCH_FULL=1 runs
//! every model shape with 1, 64 and 512 rows; QGPU_BENCH_REPEATS=20 changes the repeats.

use qgpu::bench::{report, run_suite, SuiteOptions};
use qgpu::gpu::{Context, ContextOptions};

fn main() {
    env_logger::init();
    let mut options = if std::env::var("QGPU_BENCH_FULL").is_ok_and(|v| v == "1") { SuiteOptions::full() } else { SuiteOptions::quick() };
    if let Some(repeats) = std::env::var("QGPU_BENCH_REPEATS").ok().and_then(|v| v.parse().ok()) {
        options.repeats = repeats;
    }
    let ctx = match pollster::block_on(Context::new(ContextOptions::default())) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no GPU adapter: {e}");
            std::process::exit(1);
        }
    };
    match pollster::block_on(run_suite(&ctx, &options, None, &mut |line| eprintln!("{line}"))) {
        Ok(result) => print!("{}", report::table(&ctx, &result)),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
