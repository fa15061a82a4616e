//! `livetalk bench --profile`: a phase of the bench (the DiT passes of a block, or its decode)
//! summarised from a GPU activity trace: how long the phase took, how much of it the GPU was busy
//! (union of kernels, copies and memsets on every stream), kernel time by kind, the costliest
//! kernels, and the driver calls the host made (count and host time).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use livetalk_model::gpu_trace::{driver_call_name, Activity};

/// Kernel kinds by name, first match wins.
const KINDS: &[(&str, &[&str])] = &[
    ("attention (cuDNN fused)", &["sdpa", "fmha", "flash"]),
    ("convolution", &["conv", "fprop", "dgrad", "implicit"]),
    ("matmul (cuBLAS)", &["gemm", "xmma", "cutlass", "sm90_", "Kernel2"]),
    ("fused rows (ours)", &["layer_norm_modulate", "rms_norm_rope", "gated_residual", "bias_gelu", "kv_write"]),
    ("candle copies", &["ucopy", "copy2d", "cast_"]),
];
const OTHER: &str = "other kernels";

fn kind_of(name: &str) -> &'static str {
    KINDS.iter().find(|(_, keys)| keys.iter().any(|k| name.contains(k))).map_or(OTHER, |(kind, _)| kind)
}

/// Time and count of one group, per block.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub name: String,
    pub count: f64,
    pub ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseProfile {
    pub phase: String,
    pub blocks: usize,
    /// Wall time of the phase per block (from its start mark to its end mark).
    pub span_ms: f64,
    /// Time with anything running on the GPU, per block.
    pub busy_ms: f64,
    /// Kernel time by kind, per block, largest first (copies and memsets as their own rows).
    pub kinds: Vec<Share>,
    /// The costliest kernels, per block.
    pub top_kernels: Vec<Share>,
    /// Driver calls on the host, per block, by host time.
    pub driver_calls: Vec<Share>,
    /// Host time inside driver calls, per block.
    pub driver_ms: f64,
    /// GPU idle time per block by gap length: under 10 µs (the launch-to-launch floor), 10 to
    /// 100 µs, 100 µs and longer.
    pub idle_by_gap_ms: [f64; 3],
    /// The longest idle gaps (ms) with the activities before and after them.
    pub longest_gaps: Vec<(f64, String, String)>,
}

/// An idle stretch of the GPU inside a window: (start, end, activity before, activity after).
type Gap = (u64, u64, Arc<str>, Arc<str>);

/// The idle gaps between GPU activities (`(start, end, name)`, any streams) inside `[lo, hi]`,
/// counting from the window's start and to its end.
fn gaps(mut acts: Vec<(u64, u64, Arc<str>)>, lo: u64, hi: u64) -> Vec<Gap> {
    acts.retain(|a| a.1 > lo && a.0 < hi);
    acts.sort_by_key(|a| a.0);
    let mut out = Vec::new();
    let (mut end, mut last): (u64, Arc<str>) = (lo, "window start".into());
    for (s, e, name) in acts {
        if s > end {
            out.push((end, s, last.clone(), name.clone()));
        }
        if e > end {
            end = e;
            last = name;
        }
    }
    if hi > end {
        out.push((end, hi, last, "window end".into()));
    }
    out
}

fn shares(map: HashMap<Arc<str>, (usize, u64)>, blocks: usize, keep: usize) -> Vec<Share> {
    let mut v: Vec<Share> = map
        .into_iter()
        .map(|(name, (n, ns))| Share { name: name.to_string(), count: n as f64 / blocks as f64, ms: ns as f64 / 1e6 / blocks as f64 })
        .collect();
    v.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
    v.truncate(keep);
    v
}

/// Summarises the activities that started inside the `windows` (start, end) of one phase, one
/// window per block.
pub fn summarize(phase: &str, records: &[Activity], windows: &[(u64, u64)]) -> PhaseProfile {
    let blocks = windows.len().max(1);
    let inside = |a: &Activity| windows.iter().any(|&(lo, hi)| a.start() >= lo && a.start() < hi);
    let (mut kinds, mut kernels, mut calls) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut named = Vec::new();
    let mut driver_ns = 0;
    for a in records.iter().filter(|a| inside(a)) {
        let ns = a.end().saturating_sub(a.start());
        let add = |map: &mut HashMap<Arc<str>, (usize, u64)>, key: Arc<str>| {
            let e = map.entry(key).or_insert((0, 0));
            e.0 += 1;
            e.1 += ns;
        };
        match a {
            Activity::Kernel { name, .. } => {
                add(&mut kinds, kind_of(name).into());
                add(&mut kernels, name.clone());
            }
            Activity::Copy { kind, .. } => add(&mut kinds, format!("copies (kind {kind})").into()),
            Activity::Memset { .. } => add(&mut kinds, "memsets".into()),
            Activity::Driver { call, .. } => {
                let e = calls.entry(*call).or_insert((0, 0));
                e.0 += 1;
                e.1 += ns;
                driver_ns += ns;
            }
        }
        if a.on_gpu() {
            let name: Arc<str> = match a {
                Activity::Kernel { name, .. } => name.clone(),
                Activity::Copy { kind, .. } => format!("copy (kind {kind})").into(),
                _ => "memset".into(),
            };
            named.push((a.start(), a.end(), name));
        }
    }
    let span: u64 = windows.iter().map(|&(lo, hi)| hi.saturating_sub(lo)).sum();
    let per_block = |ns: u64| ns as f64 / 1e6 / blocks as f64;
    let all_gaps: Vec<Gap> = windows.iter().flat_map(|&(lo, hi)| gaps(named.clone(), lo, hi)).collect();
    // busy: the window less its idle gaps (the union of every stream's activities)
    let busy = span - all_gaps.iter().map(|(s, e, _, _)| e - s).sum::<u64>();
    let mut idle = [0u64; 3];
    for (s, e, _, _) in &all_gaps {
        let len = e - s;
        idle[if len < 10_000 { 0 } else if len < 100_000 { 1 } else { 2 }] += len;
    }
    let mut longest: Vec<&Gap> = all_gaps.iter().collect();
    longest.sort_by_key(|g| std::cmp::Reverse(g.1 - g.0));
    let longest_gaps = longest.iter().take(5).map(|(s, e, a, b)| ((e - s) as f64 / 1e6, a.to_string(), b.to_string())).collect();
    PhaseProfile {
        phase: phase.to_string(),
        blocks,
        span_ms: per_block(span),
        busy_ms: per_block(busy),
        kinds: shares(kinds, blocks, usize::MAX),
        top_kernels: shares(kernels, blocks, 12),
        driver_calls: shares(calls.into_iter().map(|(call, v)| (driver_call_name(call).into(), v)).collect(), blocks, 10),
        driver_ms: per_block(driver_ns),
        idle_by_gap_ms: idle.map(per_block),
        longest_gaps,
    }
}

/// A kernel name short enough for a table row.
fn short(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(width - 1).collect::<String>())
    }
}

impl fmt::Display for PhaseProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  profile of {} ({} blocks traced, per block):", self.phase, self.blocks)?;
        writeln!(
            f,
            "    wall {:.1} ms, GPU busy {:.1} ms, GPU idle {:.1} ms ({:.0}%)",
            self.span_ms,
            self.busy_ms,
            self.span_ms - self.busy_ms,
            100.0 * (self.span_ms - self.busy_ms) / self.span_ms.max(1e-9)
        )?;
        let [short_gaps, mid_gaps, long_gaps] = self.idle_by_gap_ms;
        writeln!(f, "    idle in gaps < 10 us {short_gaps:.1} ms, 10-100 us {mid_gaps:.1} ms, >= 100 us {long_gaps:.1} ms")?;
        for (ms, before, after) in &self.longest_gaps {
            writeln!(f, "      gap {:.2} ms after {} before {}", ms, short(before, 40), short(after, 40))?;
        }
        for s in &self.kinds {
            writeln!(f, "    {:<28} {:>8.2} ms  {:>7.0} launches", s.name, s.ms, s.count)?;
        }
        writeln!(f, "    costliest kernels:")?;
        for s in &self.top_kernels {
            writeln!(f, "      {:>8.2} ms {:>6.0}x {:>7.1} us  {}", s.ms, s.count, 1e3 * s.ms / s.count.max(1e-9), short(&s.name, 90))?;
        }
        write!(f, "    driver calls on the host: {:.1} ms", self.driver_ms)?;
        for s in &self.driver_calls {
            write!(f, "\n      {:>8.2} ms {:>6.0}x {:>6.1} us  {}", s.ms, s.count, 1e3 * s.ms / s.count.max(1e-9), s.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(start: u64, end: u64, stream: u32, name: &str) -> Activity {
        Activity::Kernel { start, end, stream, name: name.into() }
    }

    #[test]
    fn busy_time_is_the_union_over_streams_and_idle_is_the_rest() {
        let recs = vec![
            kernel(0, 1_000_000, 7, "cudnn_generated_fort_native_sdpa_sm90"),
            // overlaps the first on another stream: counted once
            kernel(500_000, 1_500_000, 8, "sm90_xmma_gemm_bf16bf16_bf16f32"),
            kernel(3_000_000, 4_000_000, 7, "rms_norm_rope_bf16"),
            Activity::Copy { start: 4_000_000, end: 4_500_000, stream: 7, bytes: 64, kind: 1 },
            Activity::Driver { start: 100, end: 20_100, call: 307 },
            // outside the window: ignored
            kernel(20_000_000, 21_000_000, 7, "ucopy_bf16"),
        ];
        let p = summarize("DiT", &recs, &[(0, 10_000_000)]);
        assert_eq!(p.blocks, 1);
        assert!((p.span_ms - 10.0).abs() < 1e-9);
        assert!((p.busy_ms - 3.0).abs() < 1e-9, "1.5 + 1 + 0.5 ms busy, got {}", p.busy_ms);
        let ms = |k: &str| p.kinds.iter().find(|s| s.name == k).map(|s| s.ms);
        assert_eq!(ms("attention (cuDNN fused)"), Some(1.0));
        assert_eq!(ms("matmul (cuBLAS)"), Some(1.0));
        assert_eq!(ms("fused rows (ours)"), Some(1.0));
        assert_eq!(ms("copies (kind 1)"), Some(0.5));
        assert_eq!(ms("candle copies"), None);
        assert!((p.driver_ms - 0.02).abs() < 1e-9);
        assert_eq!(p.driver_calls[0].name, "cuLaunchKernel");
        // idle: 1.5..3 ms and 4.5..10 ms (to the window's end), both long gaps
        assert_eq!(p.idle_by_gap_ms, [0.0, 0.0, 7.0]);
        assert_eq!(p.longest_gaps[0], (5.5, "copy (kind 1)".to_string(), "window end".to_string()));
        assert_eq!(p.longest_gaps[1], (1.5, "sm90_xmma_gemm_bf16bf16_bf16f32".to_string(), "rms_norm_rope_bf16".to_string()));
        let text = p.to_string();
        assert!(text.contains("GPU idle 7.0 ms (70%)"), "{text}");
    }

    #[test]
    fn figures_are_per_block_over_several_windows() {
        let recs = vec![kernel(0, 2_000_000, 1, "a"), kernel(10_000_000, 14_000_000, 1, "a")];
        let p = summarize("decode", &recs, &[(0, 5_000_000), (10_000_000, 15_000_000)]);
        assert_eq!(p.blocks, 2);
        assert!((p.span_ms - 5.0).abs() < 1e-9);
        assert!((p.busy_ms - 3.0).abs() < 1e-9);
        assert_eq!(p.top_kernels, vec![Share { name: "a".into(), count: 1.0, ms: 3.0 }]);
        assert_eq!(p.kinds[0].name, OTHER);
    }

    #[test]
    fn short_gaps_between_back_to_back_kernels_are_counted_apart() {
        let recs = vec![kernel(1_000, 5_000, 1, "a"), kernel(7_000, 50_000, 1, "b"), kernel(100_000, 400_000, 1, "c")];
        let p = summarize("DiT", &recs, &[(1_000, 400_000)]);
        // 2 us between a and b, 50 us between b and c
        assert_eq!(p.idle_by_gap_ms, [0.002, 0.05, 0.0]);
        assert_eq!(p.longest_gaps[0], (0.05, "b".to_string(), "c".to_string()));
    }

    #[test]
    fn busy_time_merges_touching_and_nested_intervals() {
        let recs = vec![kernel(0, 10, 1, "a"), kernel(5, 7, 2, "b"), kernel(10, 20, 1, "c"), kernel(30, 40, 1, "d")];
        assert_eq!(summarize("x", &recs, &[(0, 35)]).busy_ms, 25e-6);
        assert_eq!(summarize("x", &[], &[(0, 10)]).busy_ms, 0.0);
    }
}
