//! umT5 encoder, prompt cleaning, prompt embedding cache and (feature `prompt-encoder`) the
//! tokenizer plumbing.
//!
//! Numerical proof: `umt5_ref/make_umt5_ref.py` is an independent plain-Python umT5 (float64,
//! written from the architecture description) whose weights, inputs and outputs for two tiny
//! configurations are committed in `umt5_ref/umt5_ref.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use livetalk_model::checkpoint::{Manifest, TensorHeader};
use livetalk_model::fixture::{self, assert_close, max_abs_diff};
use livetalk_model::prompt_cache::{self, PromptCacheError};
use livetalk_model::umt5::{
    clean_prompt, relative_position_bucket, zero_padding, RmsNorm, Umt5Config, Umt5Encoder,
};

#[path = "support/manifest_backend.rs"]
mod manifest_backend;
use manifest_backend::ManifestModel;

const MANIFEST: &str = "umt5_xxl_enc.manifest.json";

fn tiny_config() -> Umt5Config {
    Umt5Config {
        vocab_size: 40,
        dim: 16,
        dim_attn: 16,
        dim_ffn: 24,
        num_heads: 4,
        num_layers: 2,
        num_buckets: 32,
        max_distance: 128,
        eps: 1e-6,
    }
}

fn random_encoder(cfg: &Umt5Config) -> anyhow::Result<(Umt5Encoder, VarMap)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let encoder = Umt5Encoder::new(cfg, vb)?;
    Ok((encoder, varmap))
}

fn tmp_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("umt5-tests");
    std::fs::create_dir_all(&dir).unwrap();
    // unique per call: the tests of this binary run in parallel threads of one process
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{}-{n}-{name}", std::process::id()))
}

// ---- layout ---------------------------------------------------------------------------------

/// The full-size module asks for exactly the published checkpoint's 242 tensors, with its shapes.
#[test]
fn xxl_asks_for_exactly_the_manifest_tensors() -> anyhow::Result<()> {
    let model = ManifestModel::open(MANIFEST, DType::BF16)?;
    Umt5Encoder::new(&Umt5Config::xxl(), model.vb.clone())?;
    let asked = model.used();
    let listed: Vec<String> = model.shapes.keys().cloned().collect();
    assert_eq!(asked.len(), 242);
    assert_eq!(asked, listed);
    assert!(
        model.config.is_null(),
        "the encoder manifest records no config"
    );
    Ok(())
}

/// A tiny random model has the manifest's names (first `num_layers` blocks) and the manifest's
/// shapes with every real size replaced by the tiny config's.
#[test]
fn tiny_layout_follows_the_manifest() -> anyhow::Result<()> {
    let cfg = tiny_config();
    let (_encoder, varmap) = random_encoder(&cfg)?;
    let vars = varmap.data().lock().unwrap();
    let headers: Vec<(String, TensorHeader)> = vars
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                TensorHeader {
                    shape: v.dims().to_vec(),
                    dtype: v.dtype(),
                },
            )
        })
        .collect();
    assert_eq!(headers.len(), 1 + 2 * 10 + 1);

    let manifest = Manifest::load(fixture::fixtures_dir().join("manifests").join(MANIFEST))?;
    let expected = cfg.expected_layout(&manifest).map_err(anyhow::Error::msg)?;
    let problems = expected.problems(headers.iter().map(|(k, h)| (k.as_str(), h)));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        expected.expected_shape("blocks.1.pos_embedding.embedding.weight"),
        Some(vec![32, 4])
    );
    assert_eq!(
        expected.expected_shape("token_embedding.weight"),
        Some(vec![40, 16])
    );
    assert_eq!(
        expected.expected_shape("blocks.0.ffn.fc2.weight"),
        Some(vec![16, 24])
    );

    // A model with one block too few is caught, by name.
    let short = Umt5Config {
        num_layers: 1,
        ..cfg.clone()
    };
    let expected_short = short
        .expected_layout(&manifest)
        .map_err(anyhow::Error::msg)?;
    let problems = expected_short.problems(headers.iter().map(|(k, h)| (k.as_str(), h)));
    assert_eq!(problems.len(), 10);
    assert!(problems[0].tensor().starts_with("blocks.1."));
    Ok(())
}

#[test]
fn xxl_config_and_serde() -> anyhow::Result<()> {
    let cfg = Umt5Config::xxl();
    assert_eq!(
        (
            cfg.dim,
            cfg.dim_ffn,
            cfg.num_heads,
            cfg.head_dim(),
            cfg.num_layers
        ),
        (4096, 10240, 64, 64, 24)
    );
    assert_eq!(
        (cfg.vocab_size, cfg.num_buckets, cfg.max_distance, cfg.eps),
        (256384, 32, 128, 1e-6)
    );
    let back: Umt5Config = serde_json::from_str(&serde_json::to_string(&cfg)?)?;
    assert_eq!(back, cfg);

    let path = tmp_path("bad-config.json");
    std::fs::write(
        &path,
        serde_json::to_string(&Umt5Config {
            dim_attn: 4095,
            ..cfg
        })?,
    )?;
    let err = Umt5Config::from_json_file(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("dim_attn"),
        "{err}"
    );
    Ok(())
}

// ---- relative positions ---------------------------------------------------------------------

/// umT5's buckets (32, max distance 128) for distances worked out by hand: 16 buckets per
/// direction, 0..7 exact, then `8 + floor(2 * log2(n / 8))` capped at 15; keys after the query
/// (`rel > 0`) add 16.
#[test]
fn relative_position_buckets_by_hand() {
    let cases: &[(i64, usize)] = &[
        (0, 0),
        (-1, 1),
        (-7, 7),
        (-8, 8),
        (-11, 8), // 2 log2(11/8) = 0.92
        (-12, 9), // 1.17
        (-15, 9),
        (-16, 10), // exactly 2
        (-22, 10), // 2.92
        (-23, 11), // 3.05
        (-31, 11),
        (-32, 12),
        (-45, 12), // 4.98
        (-46, 13), // 5.04
        (-63, 13),
        (-64, 14),
        (-90, 14), // 6.98
        (-91, 15), // 7.02
        (-127, 15),
        (-128, 15),
        (-5000, 15),
        (1, 17),
        (7, 23),
        (8, 24),
        (12, 25),
        (16, 26),
        (46, 29),
        (91, 31),
        (5000, 31),
    ];
    for &(rel, want) in cases {
        assert_eq!(relative_position_bucket(rel, 32, 128), want, "rel {rel}");
    }
}

// ---- numerical reference --------------------------------------------------------------------

struct RefCase {
    cfg: Umt5Config,
    encoder: Umt5Encoder,
    ids: Tensor,
    mask: Tensor,
    hidden: Tensor,
    embeds: Tensor,
    buckets: Tensor,
}

fn reference(case: &str) -> anyhow::Result<RefCase> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/umt5_ref/umt5_ref.safetensors");
    let bytes = std::fs::read(&path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let cfg: Umt5Config = serde_json::from_str(&meta[&format!("{case}.config")])?;
    let mut all = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let prefix = format!("{case}.weights.");
    let weights: HashMap<String, Tensor> = all
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
        .collect();
    let encoder = Umt5Encoder::new(
        &cfg,
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
    )?;
    let mut take = |name: &str| {
        all.remove(&format!("{case}.{name}"))
            .ok_or_else(|| anyhow::anyhow!("{case}.{name} missing"))
    };
    Ok(RefCase {
        encoder,
        ids: take("ids")?,
        mask: take("mask")?,
        hidden: take("hidden")?,
        embeds: take("embeds")?,
        buckets: take("buckets")?,
        cfg,
    })
}

#[test]
fn buckets_match_the_reference_grid() -> anyhow::Result<()> {
    for case in ["a", "b"] {
        let r = reference(case)?;
        let grid: Vec<Vec<i64>> = r.buckets.to_vec2()?;
        for (i, row) in grid.iter().enumerate() {
            for (j, &want) in row.iter().enumerate() {
                let got = relative_position_bucket(
                    j as i64 - i as i64,
                    r.cfg.num_buckets,
                    r.cfg.max_distance,
                );
                assert_eq!(got as i64, want, "case {case} query {i} key {j}");
            }
        }
    }
    // case b (8 buckets, distance 8) reaches the shared last bucket of each direction
    let b = reference("b")?.buckets.to_vec2::<i64>()?;
    assert_eq!((b[0][11], b[11][0], b[0][0], b[0][1]), (7, 3, 0, 5));
    Ok(())
}

/// Encoder output (padded positions included), Wan's cut + zero padding, and the
/// valid-tokens-only path all match the plain-Python reference.
#[test]
fn matches_the_independent_reference() -> anyhow::Result<()> {
    for case in ["a", "b"] {
        let r = reference(case)?;
        let hidden = r.encoder.forward(&r.ids, Some(&r.mask))?;
        let d = assert_close(&format!("case {case} hidden"), &hidden, &r.hidden, 2e-5)?;
        eprintln!("case {case}: max |hidden - reference| = {d:e}");

        let embeds = zero_padding(&hidden, &r.mask)?;
        assert_close(&format!("case {case} embeds"), &embeds, &r.embeds, 2e-5)?;

        let len = r.ids.dim(1)?;
        for (row, mask) in r.mask.to_vec2::<i64>()?.iter().enumerate() {
            let valid = mask.iter().filter(|&&m| m != 0).count();
            let ids: Vec<u32> = r.ids.get(row)?.to_vec1::<i64>()?[..valid]
                .iter()
                .map(|&v| v as u32)
                .collect();
            let single = r.encoder.encode_ids(&ids, len)?;
            assert_eq!(single.dims(), &[len, r.cfg.dim]);
            assert_close(
                &format!("case {case} row {row} encode_ids"),
                &single,
                &r.embeds.get(row)?,
                2e-5,
            )?;
        }
    }
    Ok(())
}

/// Without the mask the padded tokens take part and the output changes: the mask is used.
#[test]
fn the_mask_matters() -> anyhow::Result<()> {
    let r = reference("a")?;
    let unmasked = r.encoder.forward(&r.ids, None)?;
    let row1 = |t: &Tensor| t.get(1).and_then(|t| t.narrow(0, 0, 7));
    assert!(max_abs_diff(&row1(&unmasked)?, &row1(&r.hidden)?)? > 1e-2);
    // an all-ones mask is the same as none
    let ones = Tensor::ones(r.ids.dims(), DType::U8, &Device::Cpu)?;
    let d = max_abs_diff(&r.encoder.forward(&r.ids, Some(&ones))?, &unmasked)?;
    assert_eq!(d, 0.0);
    Ok(())
}

/// bf16 weights run and stay near the f32 result.
#[test]
fn runs_in_bf16() -> anyhow::Result<()> {
    let r = reference("b")?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/umt5_ref/umt5_ref.safetensors");
    let weights: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)?
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("b.weights.").map(|k| (k.to_string(), v)))
        .collect();
    let encoder = Umt5Encoder::new(
        &r.cfg,
        VarBuilder::from_tensors(weights, DType::BF16, &Device::Cpu),
    )?;
    let out = encoder.forward(&r.ids, Some(&r.mask))?;
    assert_eq!(out.dtype(), DType::BF16);
    let d = max_abs_diff(&out, &r.hidden)?;
    assert!(d < 0.1, "bf16 drift {d}");
    Ok(())
}

#[test]
fn rms_norm_by_hand() -> anyhow::Result<()> {
    // rms([3, 4]) = sqrt(12.5); no mean subtraction, weight applied after
    let norm = RmsNorm::from_weight(Tensor::new(&[2f32, 0.5], &Device::Cpu)?, 1e-6);
    let y: Vec<f32> = norm
        .forward(&Tensor::new(&[3f32, 4.0], &Device::Cpu)?)?
        .to_vec1()?;
    let s = (12.5f32 + 1e-6).sqrt();
    assert!(
        (y[0] - 2.0 * 3.0 / s).abs() < 1e-6 && (y[1] - 0.5 * 4.0 / s).abs() < 1e-6,
        "{y:?}"
    );
    Ok(())
}

#[test]
fn bad_inputs_are_errors_that_say_what() -> anyhow::Result<()> {
    let cfg = tiny_config();
    let (encoder, _vars) = random_encoder(&cfg)?;
    let dev = Device::Cpu;
    let err = |r: candle_core::Result<Tensor>| r.unwrap_err().to_string();

    let e = err(encoder.forward(&Tensor::new(&[[1u32, 40]], &dev)?, None));
    assert!(
        e.contains("ids") && e.contains("token id 40") && e.contains("vocabulary"),
        "{e}"
    );
    let e = err(encoder.forward(&Tensor::new(&[[1i64, -3]], &dev)?, None));
    assert!(e.contains("token id -3"), "{e}");
    let e = err(encoder.forward(&Tensor::new(&[[1f32, 2.0]], &dev)?, None));
    assert!(e.contains("integers"), "{e}");
    let e = err(encoder.forward(&Tensor::new(&[1u32, 2], &dev)?, None));
    assert!(e.contains("[batch, len]"), "{e}");
    let e = err(encoder.forward(
        &Tensor::new(&[[1u32, 2]], &dev)?,
        Some(&Tensor::new(&[[1u32, 1, 0]], &dev)?),
    ));
    assert!(e.contains("mask") && e.contains("[1, 2]"), "{e}");
    let e = err(encoder.encode_ids(&[1, 2, 3], 2));
    assert!(e.contains("text_len 2"), "{e}");
    let e = err(encoder.encode_ids(&[], 8));
    assert!(e.contains("no tokens"), "{e}");

    let bad = Umt5Config {
        num_buckets: 6,
        max_distance: 1,
        ..cfg.clone()
    };
    let e = Umt5Encoder::new(&bad, VarBuilder::zeros(DType::F32, &dev))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_distance"), "{e}");
    let bad = Umt5Config {
        num_heads: 5,
        ..cfg
    };
    let e = Umt5Encoder::new(&bad, VarBuilder::zeros(DType::F32, &dev))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dim_attn") && e.contains("num_heads 5"), "{e}");
    Ok(())
}

// ---- text cleaning --------------------------------------------------------------------------

#[test]
fn prompt_cleaning_like_wan() {
    // whitespace runs -> one space, trimmed; HTML decoded twice; curly quotes straightened
    assert_eq!(
        clean_prompt("  A   woman\n\tsmiles \u{3000} "),
        "A woman smiles"
    );
    assert_eq!(
        clean_prompt("Tom &amp;amp; Jerry &lt;3 &#233;t&#xE9;"),
        "Tom & Jerry <3 été"
    );
    assert_eq!(
        clean_prompt("\u{2018}hi\u{2019} \u{201c}there\u{201d}"),
        "'hi' \"there\""
    );
    assert_eq!(clean_prompt("red\u{1b}[31m text\u{7}\u{feff}"), "red text");
    assert_eq!(
        clean_prompt("AT&T & co &unknown; &#xZZ;"),
        "AT&T & co &unknown; &#xZZ;"
    );
    assert_eq!(clean_prompt(" \n "), "");
}

// ---- prompt embedding cache -----------------------------------------------------------------

fn sample_embeds(valid: usize, text_len: usize, dim: usize) -> anyhow::Result<Tensor> {
    let rows = Tensor::randn(0f32, 1.0, (valid, dim), &Device::Cpu)?;
    let zeros = Tensor::zeros((text_len - valid, dim), DType::F32, &Device::Cpu)?;
    Ok(Tensor::cat(&[&rows, &zeros], 0)?)
}

#[test]
fn prompt_cache_round_trip_and_trimming() -> anyhow::Result<()> {
    let path = tmp_path("anna.prompt.safetensors");
    let embeds = sample_embeds(9, 512, 32)?;
    let prompt = "A friendly woman  talks to the camera.";
    prompt_cache::save(&path, prompt, "enc-1", &embeds)?;

    // only the 9 nonzero rows are stored
    let bytes = std::fs::read(&path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    assert_eq!(st.tensor(prompt_cache::TENSOR_NAME)?.shape(), &[9, 32]);
    assert!(bytes.len() < 9 * 32 * 4 + 1024);

    let cached = prompt_cache::read(&path, &Device::Cpu)?;
    assert_eq!(
        (cached.prompt.as_str(), cached.encoder.as_str()),
        (prompt, "enc-1")
    );
    assert_eq!(max_abs_diff(&cached.embeds, &embeds)?, 0.0);
    // the same prompt up to spacing hits
    let back = prompt_cache::load(
        &path,
        " A friendly woman talks to the camera. ",
        "enc-1",
        &Device::Cpu,
    )?;
    assert_eq!(back.dims(), &[512, 32]);
    assert_eq!(max_abs_diff(&back, &embeds)?, 0.0);

    // bf16 is kept as bf16
    let bf = embeds.to_dtype(DType::BF16)?;
    prompt_cache::save(&path, prompt, "enc-1", &bf)?;
    let back = prompt_cache::load(&path, prompt, "enc-1", &Device::Cpu)?;
    assert_eq!(back.dtype(), DType::BF16);
    assert_eq!(max_abs_diff(&back, &bf)?, 0.0);
    Ok(())
}

#[test]
fn prompt_cache_refuses_other_prompts_and_encoders() -> anyhow::Result<()> {
    let path = tmp_path("mismatch.prompt.safetensors");
    prompt_cache::save(&path, "a calm man", "enc-1", &sample_embeds(3, 16, 8)?)?;
    let shown = path.display().to_string();

    let e = prompt_cache::load(&path, "an excited man", "enc-1", &Device::Cpu).unwrap_err();
    assert!(matches!(e, PromptCacheError::PromptMismatch { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains(&shown) && msg.contains("a calm man") && msg.contains("an excited man"),
        "{msg}"
    );

    let e = prompt_cache::load(&path, "a calm man", "enc-2", &Device::Cpu).unwrap_err();
    assert!(matches!(e, PromptCacheError::EncoderMismatch { .. }));
    assert!(e.to_string().contains("enc-2") && e.to_string().contains(&shown));
    Ok(())
}

#[test]
fn prompt_cache_bad_files_name_the_file_and_field() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let path = tmp_path("broken.prompt.safetensors");

    std::fs::write(&path, b"not a safetensors file")?;
    let e = prompt_cache::read(&path, &dev).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("not a prompt embedding cache"),
        "{e}"
    );

    // a valid safetensors file without our metadata
    let t = Tensor::zeros((2, 4), DType::F32, &dev)?;
    candle_core::safetensors::save(
        &HashMap::from([(prompt_cache::TENSOR_NAME.to_string(), t)]),
        &path,
    )?;
    let e = prompt_cache::read(&path, &dev).unwrap_err().to_string();
    assert!(e.contains("`format`") && e.contains("missing"), "{e}");

    let missing = tmp_path("nowhere.safetensors");
    let e = prompt_cache::read(&missing, &dev).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");

    let e = prompt_cache::save(&path, "p", "e", &Tensor::zeros(4, DType::F32, &dev)?)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("prompt_embeds") && e.contains("[text_len, dim]"),
        "{e}"
    );
    let e = prompt_cache::save(&path, "p", "e", &Tensor::zeros((2, 2), DType::U32, &dev)?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dtype"), "{e}");
    Ok(())
}

#[test]
fn encoder_fingerprint_sees_content() -> anyhow::Result<()> {
    let a = tmp_path("enc-a.bin");
    let mut data = vec![7u8; 3 << 20];
    std::fs::write(&a, &data)?;
    let fa = prompt_cache::encoder_fingerprint(&a)?;
    assert_eq!(fa, prompt_cache::encoder_fingerprint(&a)?);
    // a change in the last MiB (where a .pth keeps its entries' checksums) changes it
    *data.last_mut().unwrap() = 8;
    std::fs::write(&a, &data)?;
    assert_ne!(fa, prompt_cache::encoder_fingerprint(&a)?);
    let e = prompt_cache::encoder_fingerprint(tmp_path("no-such-encoder.pth"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-encoder.pth"), "{e}");
    Ok(())
}

// ---- tokenizer (feature `prompt-encoder`) ---------------------------------------------------

#[cfg(feature = "prompt-encoder")]
mod tokenizer {
    use super::*;
    use livetalk_model::umt5::{encode_prompt, Umt5Tokenizer};
    use tokenizers::models::unigram::Unigram;
    use tokenizers::normalizers::NFKC;
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::Tokenizer;

    /// A tokenizer.json shaped like umT5's: unigram model, `<pad>` 0 / `</s>` 1 / `<unk>` 2,
    /// NFKC, metaspace pre-tokenizer, `$A </s>` post-processor.
    fn tiny_tokenizer_file() -> anyhow::Result<PathBuf> {
        let pieces = [
            "<pad>",
            "</s>",
            "<unk>",
            "▁A",
            "▁woman",
            "▁wo",
            "man",
            "▁smiles",
            "▁",
            "s",
            "'",
            "▁'",
        ];
        let vocab: Vec<(String, f64)> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), -1.0 - i as f64 * 0.1))
            .collect();
        let model = Unigram::from(vocab, Some(2), false).map_err(anyhow::Error::msg)?;
        let post = TemplateProcessing::builder()
            .try_single("$A </s>")
            .map_err(anyhow::Error::msg)?
            .special_tokens(vec![("</s>", 1)])
            .build()?;
        let mut tok = Tokenizer::new(model);
        tok.with_normalizer(Some(NFKC))
            .map_err(anyhow::Error::msg)?
            .with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)))
            .with_post_processor(Some(post));
        let path = tmp_path("tokenizer.json");
        tok.save(&path, false).map_err(anyhow::Error::msg)?;
        Ok(path)
    }

    #[test]
    fn tokenizes_cleans_and_truncates_like_wan() -> anyhow::Result<()> {
        let tok = Umt5Tokenizer::from_file(tiny_tokenizer_file()?)?;
        // whitespace cleaned, </s> appended
        assert_eq!(tok.encode("  A   woman\n smiles ", 512)?, vec![3, 4, 7, 1]);
        // curly quote straightened before tokenizing ("▁'"), then "wo" has no piece without
        // the word boundary: <unk>, "man"
        assert_eq!(tok.encode("A \u{2018}woman", 512)?, vec![3, 11, 2, 6, 1]);
        // NFKC (the real file's precompiled normaliser does the same): fullwidth letters
        assert_eq!(tok.encode("\u{ff21} woman", 512)?, vec![3, 4, 1]);
        // truncation keeps </s>
        assert_eq!(tok.encode("A woman smiles", 3)?, vec![3, 4, 1]);
        let e = tok.encode("A woman", 1).unwrap_err().to_string();
        assert!(e.contains("text_len"), "{e}");
        Ok(())
    }

    #[test]
    fn missing_or_broken_tokenizer_names_the_file() -> anyhow::Result<()> {
        let path = tmp_path("broken-tokenizer.json");
        std::fs::write(&path, "{\"model\": 3}")?;
        let e = Umt5Tokenizer::from_file(&path).err().unwrap().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let e = Umt5Tokenizer::from_file(tmp_path("absent.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("absent.json"), "{e}");
        Ok(())
    }

    /// Text -> ids -> encoder -> `[text_len, dim]` with zero rows after the tokens, the same as
    /// the batch path with padding and mask.
    #[test]
    fn encode_prompt_end_to_end() -> anyhow::Result<()> {
        let tok = Umt5Tokenizer::from_file(tiny_tokenizer_file()?)?;
        let cfg = Umt5Config {
            vocab_size: 12,
            ..tiny_config()
        };
        let (encoder, _vars) = random_encoder(&cfg)?;
        let text_len = 10;
        let embeds = encode_prompt(&tok, &encoder, "A woman smiles", text_len)?;
        assert_eq!(embeds.dims(), &[text_len, cfg.dim]);

        let ids = Tensor::new(&[[3u32, 4, 7, 1, 0, 0, 0, 0, 0, 0]], &Device::Cpu)?;
        let mask = Tensor::new(&[[1u8, 1, 1, 1, 0, 0, 0, 0, 0, 0]], &Device::Cpu)?;
        let batch = zero_padding(&encoder.forward(&ids, Some(&mask))?, &mask)?.squeeze(0)?;
        assert!(max_abs_diff(&embeds, &batch)? < 1e-5);
        let tail = embeds
            .narrow(0, 4, text_len - 4)?
            .abs()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert_eq!(tail, 0.0);
        let head = embeds
            .narrow(0, 0, 4)?
            .abs()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert!(head > 1.0);
        Ok(())
    }

    /// The persona flow: encode once, then hit the cache; another prompt or another encoder
    /// file re-encodes. The tiny checkpoint is also checked against the real manifest.
    #[test]
    fn load_or_encode_caches_per_prompt_and_encoder() -> anyhow::Result<()> {
        use livetalk_model::prompt_cache::{load_or_encode, PromptEncoderFiles, Source};
        let cfg = Umt5Config {
            vocab_size: 12,
            ..tiny_config()
        };
        let weights = tmp_path("tiny-umt5.safetensors");
        let (_encoder, vars) = random_encoder(&cfg)?;
        vars.save(&weights)?;
        let files = PromptEncoderFiles {
            encoder: weights.clone(),
            tokenizer: tiny_tokenizer_file()?,
            manifest: Some(fixture::fixtures_dir().join("manifests").join(MANIFEST)),
            config: cfg.clone(),
        };
        let cache = tmp_path("persona.prompt.safetensors");
        let _ = std::fs::remove_file(&cache);
        let dev = Device::Cpu;

        let (first, source) =
            load_or_encode(&cache, "A woman smiles", &files, 10, DType::F32, &dev)?;
        assert!(
            matches!(&source, Source::Encoded { reason } if reason.contains("no cache yet")),
            "{source:?}"
        );
        assert_eq!(first.dims(), &[10, 16]);
        let (again, source) =
            load_or_encode(&cache, "A  woman smiles ", &files, 10, DType::F32, &dev)?;
        assert_eq!(source, Source::Cache);
        assert_eq!(max_abs_diff(&first, &again)?, 0.0);

        let (other, source) = load_or_encode(&cache, "A woman", &files, 10, DType::F32, &dev)?;
        assert!(
            matches!(&source, Source::Encoded { reason } if reason.contains("another prompt")),
            "{source:?}"
        );
        assert!(max_abs_diff(&other, &first)? > 0.0);

        // new weights in the encoder file -> its fingerprint changes -> encoded again
        let (_encoder, vars) = random_encoder(&cfg)?;
        vars.save(&weights)?;
        let (_, source) = load_or_encode(&cache, "A woman", &files, 10, DType::F32, &dev)?;
        assert!(
            matches!(&source, Source::Encoded { reason } if reason.contains("another text encoder")),
            "{source:?}"
        );

        // a checkpoint that does not fit the manifest is refused by name
        let wrong = Umt5Config {
            num_layers: 3,
            ..cfg
        };
        let files = PromptEncoderFiles {
            config: wrong,
            ..files
        };
        let e = load_or_encode(&cache, "A woman smiles", &files, 10, DType::F32, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tiny-umt5.safetensors") && e.contains("blocks.2."),
            "{e}"
        );
        Ok(())
    }
}

/// Full-size umT5-XXL with random bf16 weights on the GPU: load time and the cost of one
/// prompt (valid tokens only, as `encode_ids` runs it) and of a full 512-token sequence.
/// `cargo test --release --features cuda --test umt5 -- --ignored --nocapture full_size`
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU with ~16 GB free"]
fn full_size_speed_on_gpu() -> anyhow::Result<()> {
    use std::time::Instant;
    let dev = Device::new_cuda(0)?;
    let t0 = Instant::now();
    let model = ManifestModel::open_random(MANIFEST, DType::BF16, &dev, 0.02)?;
    let cfg = Umt5Config::xxl();
    let encoder = Umt5Encoder::new(&cfg, model.vb.clone())?;
    dev.synchronize()?;
    eprintln!("umt5-xxl random bf16 weights on GPU: {:.1} s", t0.elapsed().as_secs_f64());
    for tokens in [32usize, 128, 512] {
        let ids: Vec<u32> = (0..tokens as u32).map(|i| 100 + i * 7).collect();
        let embeds = encoder.encode_ids(&ids, 512)?; // warm-up
        dev.synchronize()?;
        let runs = 5;
        let t = Instant::now();
        for _ in 0..runs {
            encoder.encode_ids(&ids, 512)?;
        }
        dev.synchronize()?;
        let ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
        let finite = embeds.to_dtype(DType::F32)?.abs()?.max_all()?.to_scalar::<f32>()?.is_finite();
        eprintln!("encode {tokens:>3} tokens: {ms:.1} ms (output finite: {finite})");
        assert_eq!(embeds.dims(), &[512, 4096]);
        assert!(finite);
    }
    Ok(())
}
