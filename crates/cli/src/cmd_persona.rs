//! `livetalk persona list|show|new|encode-prompt`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::presets;

#[derive(Subcommand)]
pub enum PersonaCommand {
    /// List the persona presets livetalk finds, and where it looks.
    List {
        #[arg(long = "presets", value_name = "DIR")]
        preset_dirs: Vec<std::path::PathBuf>,
    },
    /// Make a persona from a photo (or a webcam picture): a face-centred 512x512 reference
    /// picture and a CPU-avatar look, in your persona folder.
    New(crate::persona_new::NewArgs),
    /// Print one persona preset as TOML.
    Show {
        /// The persona's name.
        name: String,
        #[arg(long = "presets", value_name = "DIR")]
        preset_dirs: Vec<std::path::PathBuf>,
    },
    /// Compute the persona's prompt embedding with umT5-XXL once and cache it next to the preset
    /// (`NAME.prompt.safetensors`), so the text encoder is never resident while streaming.
    EncodePrompt {
        /// The persona's name.
        name: String,
        /// The umT5 encoder (`models_t5_umt5-xxl-enc-bf16.pth` of Wan2.1-T2V-1.3B).
        #[arg(long)]
        umt5: PathBuf,
        /// The umT5 tokenizer (`google/umt5-xxl/tokenizer.json` of Wan2.1-T2V-1.3B).
        #[arg(long)]
        tokenizer: PathBuf,
        /// Device for the encoder: cpu or cuda.
        #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
        device: String,
        /// Where to write the embedding (default: next to the preset).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "presets", value_name = "DIR")]
        preset_dirs: Vec<std::path::PathBuf>,
    },
}

/// Prompt length the LiveTalk model was trained with (Wan's text_len).
const TEXT_LEN: usize = 512;

fn encode_prompt(name: &str, umt5: PathBuf, tokenizer: PathBuf, device: &str, out: Option<PathBuf>, preset_dirs: &[PathBuf]) -> Result<()> {
    use livetalk_model::prompt_cache::{load_or_encode, PromptEncoderFiles, Source};
    let lib = presets::library(preset_dirs)?;
    let persona = lib.get(name)?;
    if persona.prompt.trim().is_empty() {
        bail!("persona {} has no prompt (field `prompt` in {})", persona.name, persona.origin.display());
    }
    for (what, path) in [("umT5 encoder", &umt5), ("tokenizer", &tokenizer)] {
        if !path.is_file() {
            bail!("{what} {} does not exist", path.display());
        }
    }
    let out = match out {
        Some(out) => out,
        None if persona.origin.starts_with("<built-in>") || !persona.origin.is_file() => bail!(
            "persona {} is built in: copy its preset into ~/.config/livetalk/personas/ first, or pass --out",
            persona.name
        ),
        None => persona.folder().join(format!("{}.prompt.safetensors", persona.name)),
    };
    let device = match device {
        "cuda" => livetalk_model::open_cuda(0).context("opening CUDA device 0")?,
        _ => candle_core::Device::Cpu,
    };
    // bf16 everywhere: the published encoder is bf16, and f32 would need 23 GB of memory.
    let files = PromptEncoderFiles {
        encoder: umt5,
        tokenizer,
        manifest: None,
        config: livetalk_model::umt5::Umt5Config::xxl(),
    };
    let (embeds, source) = load_or_encode(&out, &persona.prompt, &files, TEXT_LEN, candle_core::DType::BF16, &device)?;
    match source {
        Source::Cache => println!("{} is up to date ({:?})", out.display(), embeds.dims()),
        Source::Encoded { reason } => println!("wrote {} ({:?}; {reason})", out.display(), embeds.dims()),
    }
    Ok(())
}

pub fn persona(cmd: PersonaCommand) -> Result<()> {
    match cmd {
        PersonaCommand::List { preset_dirs } => {
            let lib = presets::library(&preset_dirs)?;
            for p in lib.iter() {
                let hotkey = p.hotkey.as_ref().map(|h| h.to_string()).unwrap_or_default();
                println!("{:<12} {:<20} {:<14} {}", p.name, p.display_name, hotkey, p.origin.display());
            }
            for conflict in lib.hotkey_conflicts() {
                println!("warning: {conflict}");
            }
            println!("\nsearched: built-in presets, then {}", {
                let dirs: Vec<String> = presets::search_dirs(&preset_dirs).iter().map(|d| d.display().to_string()).collect();
                dirs.join(", ")
            });
            Ok(())
        }
        PersonaCommand::New(args) => crate::persona_new::new_persona(args),
        PersonaCommand::EncodePrompt { name, umt5, tokenizer, device, out, preset_dirs } => {
            encode_prompt(&name, umt5, tokenizer, &device, out, &preset_dirs)
        }
        PersonaCommand::Show { name, preset_dirs } => {
            let lib = presets::library(&preset_dirs)?;
            let p = lib.get(&name)?;
            println!("# {}", p.origin.display());
            print!("{}", p.to_toml()?);
            Ok(())
        }
    }
}
