//! `livetalk bench --engine livetalk --decoder ...` on the CPU with the tiny fixture DiT: the
//! option reaches the benchmark and the report names the decoder it measured.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_livetalk");

fn bench(extra: &[&str]) -> std::process::Output {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dit.config.json");
    Command::new(BIN)
        .args(["bench", "--engine", "livetalk", "--device", "cpu", "--side", "16", "--blocks", "1", "--dit-config"])
        .arg(&config)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn bench_measures_the_wan_vae_decoder() {
    let out = bench(&["--decoder", "wan-vae"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Cpu F32, 16x16, Wan VAE decoder"), "{stdout}");
    assert!(stdout.contains("    Wan VAE decode "), "{stdout}");
    assert!(stdout.contains("decoded frames       12 of 16x16"), "{stdout}");
}

#[test]
fn bench_rejects_an_unknown_decoder() {
    let out = bench(&["--decoder", "vqgan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--decoder") && stderr.contains("wan-vae"), "{stderr}");
}
