//! `livetalk persona list|show`.

use anyhow::Result;
use clap::Subcommand;

use crate::presets;

#[derive(Subcommand)]
pub enum PersonaCommand {
    /// List the persona presets livetalk finds, and where it looks.
    List {
        #[arg(long = "presets", value_name = "DIR")]
        preset_dirs: Vec<std::path::PathBuf>,
    },
    /// Print one persona preset as TOML.
    Show {
        /// The persona's name.
        name: String,
        #[arg(long = "presets", value_name = "DIR")]
        preset_dirs: Vec<std::path::PathBuf>,
    },
}

pub fn persona(cmd: PersonaCommand) -> Result<()> {
    match cmd {
        PersonaCommand::List { preset_dirs } => {
            let lib = presets::library(&preset_dirs)?;
            for p in lib.iter() {
                let hotkey = p.hotkey.as_ref().map(|h| h.to_string()).unwrap_or_default();
                println!("{:<12} {:<20} {:<14} {}", p.name, p.display_name, hotkey, p.origin.display());
            }
            println!("\nsearched: built-in presets, then {}", {
                let dirs: Vec<String> = presets::search_dirs(&preset_dirs).iter().map(|d| d.display().to_string()).collect();
                dirs.join(", ")
            });
            Ok(())
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
