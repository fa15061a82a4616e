//! Runtime choice of instruction set for the conversion loops.
//!
//! The loops are plain Rust written so the compiler can vectorise them; what it can do depends
//! on the instructions it may use. The x86-64 baseline (SSE2) has no 32-bit vector multiply,
//! so the fixed-point maths stays scalar there, while AVX2 and AVX-512 run it several times
//! faster (measured on a busy build machine, 720p: RGBA → YUYV ≈ 2 ms baseline, 0.6 ms AVX2,
//! 0.26 ms AVX-512; YUYV → BGRA 3.9 / 0.76 / 0.17 ms; the 4:2:0 loops, ≈ 2–3 ms, gain little).
//! The same source is therefore compiled once per instruction set and picked at run time;
//! integer arithmetic makes every variant produce identical bytes.

use super::{convert_job, Job};

/// An instruction set the conversion loops are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// What every CPU of the target architecture has.
    Baseline,
    /// x86-64 with AVX2.
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL.
    Avx512,
}

impl Isa {
    /// The instruction sets this CPU can run, slowest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The fastest instruction set this CPU can run.
    pub fn best() -> Isa {
        Self::available().pop().unwrap_or(Isa::Baseline)
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx2")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }
}

/// Runs the conversion compiled for `isa`, or for the baseline when the CPU lacks `isa`.
pub(crate) fn run(isa: Isa, job: Job<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: each variant runs only after `is_available` confirmed that the CPU has the
        // instructions it was compiled for.
        if isa == Isa::Avx512 && isa.is_available() {
            return unsafe { convert_avx512(job) };
        }
        if isa == Isa::Avx2 && isa.is_available() {
            return unsafe { convert_avx2(job) };
        }
    }
    let _ = isa;
    convert_job(job)
}

// `convert_job` and the loops below it are `#[inline(always)]`, so each of these functions
// holds its own copy of them, compiled with its instruction set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn convert_avx2(job: Job<'_>) {
    convert_job(job)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn convert_avx512(job: Job<'_>) {
    convert_job(job)
}
