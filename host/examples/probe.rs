use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shiftnas::data::*;
use shiftnas::train::*;
use shiftnas_models::{Arch, Space, Supernet};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lr: f64 = args[1].parse()?;
    let steps: u64 = args[2].parse()?;
    let fixed = args.get(3).cloned();
    let device = Device::Cpu;
    let spec: DataSpec = "builtin:fashion-mnist"
        .parse()
        .map_err(anyhow::Error::msg)?;
    let space = Space::tiny().with_classes(10);
    let data = prepare_data(&spec, &space, ConformOptions::default(), None, 0)?;
    let norm = Normalize::from_dataset(&data.pair.train, &data.splits.train);
    println!("norm {norm:?}");
    let net = Supernet::new(&space, &device, 0)?;
    if std::env::var("SHARE").is_ok() {
        let vars: std::collections::BTreeMap<String, candle_core::Var> =
            net.trainable().into_iter().collect();
        for (name, var) in &vars {
            for c in [1, 2] {
                if !name.contains(&format!(".choice{c}.")) {
                    continue;
                }
                let src = vars[&name.replace(&format!(".choice{c}."), ".choice0.")]
                    .as_tensor()
                    .clone();
                let dst = var.as_tensor();
                let t = if src.dims() == dst.dims() {
                    src
                } else {
                    let p = (dst.dims()[3] - src.dims()[3]) / 2;
                    src.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
                };
                var.set(&t)?;
            }
        }
    }
    if let Ok(f) = std::env::var("INITX") {
        let f: f64 = f.parse()?;
        for (name, var) in net.trainable() {
            if name.contains("conv") {
                var.set(&var.as_tensor().affine(f, 0.0)?)?;
            }
        }
    }
    let mut sgd = Sgd::new(SgdConfig {
        lr,
        momentum: std::env::var("MOM")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.9),
        weight_decay: 4e-5,
    });
    let mut b = Batcher::new(
        &data.pair.train,
        data.splits.train.clone(),
        64,
        Augment::NONE,
        norm.clone(),
        0,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut acc = 0.0;
    if std::env::var("CHECK").is_ok() {
        let batch = b.next_batch(&mut rng, &device)?;
        let base = net.forward_t(
            &batch.images,
            &space.parse_arch("00000000000000000000")?,
            false,
        )?;
        for a in [
            "11111111111111111111",
            "22222222222222222222",
            "01201201201201201201",
        ] {
            let y = net.forward_t(&batch.images, &space.parse_arch(a)?, false)?;
            let d = (y - &base)?.abs()?.max_all()?.to_scalar::<f32>()?;
            println!(
                "{a}: max diff {d:e}, base max {}",
                base.abs()?.max_all()?.to_scalar::<f32>()?
            );
        }
        net.set_dropout_seed(5);
        let y0 = net.forward_t(
            &batch.images,
            &space.parse_arch("00000000000000000000")?,
            true,
        )?;
        net.set_dropout_seed(5);
        let y1 = net.forward_t(
            &batch.images,
            &space.parse_arch("11111111111111111111")?,
            true,
        )?;
        println!(
            "train-mode diff {:e}",
            (y1 - y0)?.abs()?.max_all()?.to_scalar::<f32>()?
        );
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    for step in 0..steps {
        let arch = match &fixed {
            Some(a) if a == "alt" => space.parse_arch(if step % 2 == 0 {
                "00000000000000000000"
            } else {
                "11111111111111111111"
            })?,
            Some(a) => space.parse_arch(a)?,
            None => Arch::random(
                20,
                std::env::var("NCH")
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(4),
                &mut rng,
            ),
        };
        let batch = b.next_batch(&mut rng, &device)?;
        let (loss, g) = batch_loss_and_grads(&net, &arch, &batch.images, &batch.labels, 0.1)?;
        if step == 0 {
            println!("arch {arch}");
            for n in g.names().take(200) {
                let t = g.get(n).unwrap();
                let v = t.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
                if n.contains("classifier")
                    || n.contains("last")
                    || n.contains("stem")
                    || n.starts_with("blocks.0.")
                    || n.starts_with("blocks.1.")
                    || n.starts_with("blocks.2.")
                    || n.starts_with("blocks.19")
                {
                    println!("{n}: |g|={v:e}");
                }
            }
        }
        sgd.step(&g)?;
        acc += loss;
        if (step + 1) % 20 == 0 {
            println!(
                "step {} loss {:.4} t {:.2}s",
                step + 1,
                acc / 20.0,
                t0.elapsed().as_secs_f64()
            );
            acc = 0.0;
        }
    }
    Ok(())
}
