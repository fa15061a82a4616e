//! Parity of the reference-image preprocessing (`fixtures/image_preprocess.*`).

use candle_core::Device;
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::image_preprocess::{match_size, reference_image_tensor};

fn pair(fx: &Fixture, key: &str) -> [usize; 2] {
    let v = &fx.params[key];
    let get = |i: usize| {
        v[i].as_u64()
            .unwrap_or_else(|| panic!("fixture `{key}`[{i}]")) as usize
    };
    [get(0), get(1)]
}

#[test]
fn matches_torchvision_resize_pad() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "image_preprocess")?;
    let [h, w] = pair(&fx, "source_hw");
    let image = fx.tensor("input.image_uint8")?;
    assert_eq!(image.dims(), &[h, w, 3]);
    let rgb = image.flatten_all()?.to_vec1::<u8>()?;

    let candidates: Vec<[usize; 2]> = fx.params["image_sizes"]
        .as_array()
        .expect("image_sizes")
        .iter()
        .map(|s| {
            [
                s[0].as_u64().unwrap() as usize,
                s[1].as_u64().unwrap() as usize,
            ]
        })
        .collect();
    let target = match_size(&candidates, h, w).expect("a candidate size");
    assert_eq!(target, pair(&fx, "target_hw"));

    let got = reference_image_tensor(&rgb, h, w, target, &Device::Cpu)?;
    let d = fixture::assert_close("image", &got, &fx.tensor("expected.image")?, 1e-5)?;
    println!("image max abs diff {d:e}");
    Ok(())
}

/// The pipeline fixture's picture already has the target size: the resize is the identity.
#[test]
fn matches_pipeline_reference_image() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "pipeline")?;
    let [h, w] = pair(&fx, "image_hw");
    let rgb = fx
        .tensor("input.image_uint8")?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let target = pair(&fx, "image_hw");
    let got = reference_image_tensor(&rgb, h, w, target, &Device::Cpu)?;
    let d = fixture::assert_close("ref_image", &got, &fx.tensor("expected.ref_image")?, 1e-5)?;
    println!("pipeline ref_image max abs diff {d:e}");
    Ok(())
}
