use livetalk_model::fixture::{self, Fixture};

#[test]
fn loads_schedule_fixture() -> anyhow::Result<()> {
    let fx = Fixture::load(fixture::fixtures_dir(), "schedule")?;
    assert_eq!(fx.params["num_inference_steps"].as_u64(), Some(4));
    let t = fx.tensor("expected.denoising_step_list")?;
    assert_eq!(t.dims(), &[4]);
    assert_eq!(fixture::max_abs_diff(&t, &t)?, 0.0);
    assert!(fx.tensor("no.such").is_err());
    Ok(())
}
