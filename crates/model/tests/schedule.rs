//! `schedule` fixture: bitwise parity of the flow-matching schedule and the sinusoidal embedding.

use candle_core::{DType, Tensor};
use half::bf16;
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::schedule::{self, FlowMatchScheduler};

fn f32s(fx: &Fixture, name: &str) -> Vec<f32> {
    fx.tensor(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn schedule_bitwise() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "schedule")?;
    let sch = FlowMatchScheduler::from_json(&fx.params)?;
    let n = fx.params["num_inference_steps"].as_u64().unwrap() as usize;
    assert_eq!(sch.sigmas().len(), n);

    assert_eq!(bits(sch.sigmas()), bits(&f32s(&fx, "expected.scheduler_sigmas")), "sigmas");
    assert_eq!(bits(sch.timesteps()), bits(&f32s(&fx, "expected.scheduler_timesteps")), "timesteps");

    let steps = sch.denoising_step_list();
    assert_eq!(bits(&steps), bits(&f32s(&fx, "expected.denoising_step_list")), "denoising_step_list");
    let want_bf16: Vec<u16> = fx
        .tensor("expected.denoising_step_list_bf16")?
        .to_vec1::<bf16>()?
        .iter()
        .map(|x| x.to_bits())
        .collect();
    let got_bf16: Vec<u16> = steps.iter().map(|&t| bf16::from_f32(t).to_bits()).collect();
    assert_eq!(got_bf16, want_bf16, "denoising_step_list_bf16");

    let x0_sig: Vec<f32> = steps.iter().map(|&t| sch.sigma_x0(t) as f32).collect();
    assert_eq!(bits(&x0_sig), bits(&f32s(&fx, "expected.sigma_x0_conversion")), "sigma_x0_conversion");
    let add_sig: Vec<f32> = steps[1..].iter().map(|&t| sch.sigma_at(t)).collect();
    assert_eq!(bits(&add_sig), bits(&f32s(&fx, "expected.sigma_add_noise")), "sigma_add_noise");

    // sinusoidal embedding
    let dim = fx.params["freq_dim"].as_u64().unwrap() as usize;
    let t_in = f32s(&fx, "expected.timestep_embedding_input");
    let mut want_t = steps.clone();
    want_t.push(0.0);
    assert_eq!(bits(&t_in), bits(&want_t), "timestep_embedding_input = steps + refresh 0");
    let emb = schedule::sinusoidal_embedding_f32(dim, &t_in);
    assert_eq!(bits(&emb), bits(&f32s(&fx, "expected.sinusoid_f32")), "sinusoid_f32");

    // tensor API, f32
    let tt = Tensor::new(t_in.as_slice(), &candle_core::Device::Cpu)?;
    let emb_t = schedule::sinusoidal_embedding(dim, &tt)?;
    assert_eq!(emb_t.dims(), &[t_in.len(), dim]);
    assert_eq!(bits(&emb_t.flatten_all()?.to_vec1::<f32>()?), bits(&emb));

    // bf16 rounded variant
    let tb: Vec<bf16> = t_in.iter().map(|&x| bf16::from_f32(x)).collect();
    let emb_b: Vec<u16> = schedule::sinusoidal_embedding_bf16(dim, &tb).iter().map(|x| x.to_bits()).collect();
    let want_b: Vec<u16> = fx
        .tensor("expected.sinusoid_bf16_rounded")?
        .flatten_all()?
        .to_vec1::<bf16>()?
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(emb_b, want_b, "sinusoid_bf16_rounded");
    let emb_bt = schedule::sinusoidal_embedding(dim, &tt.to_dtype(DType::BF16)?)?;
    assert_eq!(emb_bt.dtype(), DType::BF16);
    let emb_bt: Vec<u16> = emb_bt.flatten_all()?.to_vec1::<bf16>()?.iter().map(|x| x.to_bits()).collect();
    assert_eq!(emb_bt, want_b);
    Ok(())
}

#[test]
fn add_noise_and_x0() -> anyhow::Result<()> {
    let sch = FlowMatchScheduler::new(Default::default());
    let dev = candle_core::Device::Cpu;
    let x0 = Tensor::new(&[1.0f32, -2.0, 0.5], &dev)?;
    let nz = Tensor::new(&[0.25f32, 1.0, -1.0], &dev)?;
    let steps = sch.denoising_step_list();
    assert_eq!(steps, vec![1000.0, 936.0, 832.0, 624.0]);
    let x = sch.add_noise(&x0, &nz, steps[3])?.to_vec1::<f32>()?;
    // sigma 0.625
    assert_eq!(x, vec![0.375 * 1.0 + 0.625 * 0.25, 0.375 * -2.0 + 0.625, 0.375 * 0.5 - 0.625]);
    let v = Tensor::new(&[2.0f32, 0.0, 1.0], &dev)?;
    let x0b = sch.flow_to_x0(&v, &x0, steps[1])?.to_vec1::<f32>()?;
    assert_eq!(x0b, vec![1.0 - 0.9375 * 2.0, -2.0, 0.5 - 0.9375]);
    Ok(())
}
