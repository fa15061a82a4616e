//! Checkpoint files (`.safetensors` and PyTorch `.pth` zip + pickle): the first byte picks the
//! extension, the rest is the file. Opening must give a result or a `CheckpointError`, never a
//! panic; a file that opens must read every tensor (a few) or name why not, and what it reports
//! about itself (sizes, parameter count, key hash) must be computable.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use libfuzzer_sys::fuzz_target;
use livetalk_model::checkpoint::Checkpoint;

fn folder() -> &'static PathBuf {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("livetalk-fuzz-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz checkpoint folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, file)) = data.split_first() else { return };
    let path = folder().join(if kind & 1 == 0 { "fuzz.safetensors" } else { "fuzz.pth" });
    std::fs::write(&path, file).expect("fuzz checkpoint file");
    let Ok(checkpoint) = Checkpoint::open(&path) else { return };
    let _ = (checkpoint.num_params(), checkpoint.keys_md5(), checkpoint.len());
    let names: Vec<String> = checkpoint.names().take(8).map(str::to_owned).collect();
    for name in names {
        let header = checkpoint.header(&name).expect("a listed name has a header").clone();
        if let Ok(tensor) = checkpoint.load(&name, DType::F32, &Device::Cpu) {
            assert_eq!(tensor.dims(), header.shape.as_slice(), "{name}: loaded shape differs from its header");
        }
    }
});
