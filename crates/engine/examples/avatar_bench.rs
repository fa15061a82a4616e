//! One-core speed of the CPU avatar: `cargo run --release -p livetalk-engine --example
//! avatar_bench -- [WIDTH HEIGHT FRAMES]` (default 1280 720 600).

use livetalk_engine::avatar::bench::bench_cpu_avatar;

fn main() -> anyhow::Result<()> {
    let args: Vec<u32> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (width, height, frames) = match args.as_slice() {
        [] => (1280, 720, 600),
        [w, h] => (*w, *h, 600),
        [w, h, n] => (*w, *h, *n),
        _ => anyhow::bail!("usage: avatar_bench [WIDTH HEIGHT [FRAMES]]"),
    };
    println!("{}", bench_cpu_avatar(width, height, frames as usize)?);
    Ok(())
}
