//! The OBS module: registers the "livetalk avatar" source. obs-wrapper gives the module
//! boilerplate and the logger; the source itself is a raw `obs_source_info` because the wrapper
//! has no API for what it needs (asynchronous video and audio output, show/hide, save, buttons,
//! source hotkeys registered at any time, audio capture of another source).

mod capture;
mod ffi;
mod hotkeys;
mod properties;
mod source;

use obs_wrapper::obs_sys;
use obs_wrapper::prelude::*;

struct LivetalkModule {
    context: ModuleContext,
}

impl Module for LivetalkModule {
    fn new(context: ModuleContext) -> Self {
        LivetalkModule { context }
    }

    fn get_ctx(&self) -> &ModuleContext {
        &self.context
    }

    fn load(&mut self, _load: &mut obs_wrapper::module::LoadContext) -> bool {
        let _ = obs_wrapper::log::Logger::new().with_max_level(log::LevelFilter::Info).init();
        let info = Box::leak(Box::new(source::source_info()));
        // SAFETY: a valid, never freed source info; OBS copies what it needs.
        unsafe { obs_sys::obs_register_source_s(info, std::mem::size_of::<obs_sys::obs_source_info>() as _) };
        log::info!("livetalk avatar source registered (livetalk-obs {})", env!("CARGO_PKG_VERSION"));
        true
    }

    fn description() -> ObsString {
        obs_wrapper::obs_string!("A livetalk avatar as a source: video and voice in sync, fed by a running livetalk")
    }

    fn name() -> ObsString {
        obs_wrapper::obs_string!("livetalk")
    }

    fn author() -> ObsString {
        obs_wrapper::obs_string!("livetalk")
    }
}

obs_wrapper::obs_register_module!(LivetalkModule);
