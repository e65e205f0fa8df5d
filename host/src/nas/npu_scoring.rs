//! `--npu-accuracy`: the final front scored through rknn-toolkit2's simulator of the RK3588 NPU,
//! beside the fp32 subnet on the same proxy images ([`crate::npu::simulated_accuracy`]).

use anyhow::{Context as _, Result};
use shiftnas_models::onnx::ExportOptions;
use shiftnas_models::subnet::Subnet;

use super::arch_problem::ArchProblem;
use super::driver::NpuScoring;
use crate::archive::ArchiveRecord;
use crate::npu::{Converter, Images, QuantAccuracy, simulated_accuracy};
use crate::train::{BnSource, calibrate_bn};

/// Each member of `front`, its BN calibrated as the search scores it, exported and scored in fp32
/// and on the simulated NPU, in the front's order.
///
/// # Errors
/// A conversion that fails or puts ops on the CPU (naming the arch), or the simulator failing.
pub fn score_front(
    problem: &ArchProblem<'_>,
    converter: &Converter,
    scoring: NpuScoring,
    front: &[ArchiveRecord],
) -> Result<Vec<QuantAccuracy>> {
    let ev = &problem.evaluator;
    let eval = Images::spread(ev.data, ev.proxy, scoring.images, ev.normalize)?;
    let calibration = Images::spread(ev.data, ev.train, scoring.calibration, ev.normalize)?;
    let options = ExportOptions {
        mean: Some(ev.normalize.mean.clone()),
        std: Some(ev.normalize.std.clone()),
        class_names: Some(ev.data.class_names.clone()),
        ..ExportOptions::default()
    };
    front
        .iter()
        .map(|r| {
            let bn = BnSource {
                data: ev.data,
                indices: ev.train,
                mode: ev.bn,
                images: ev.bn_images,
                seed: ev.seed,
            };
            calibrate_bn(problem.net, &r.arch, bn, ev.normalize, ev.batch)?;
            let subnet =
                Subnet::from_tensors(&problem.space, &r.arch, &problem.net.arch_tensors(&r.arch)?)?;
            simulated_accuracy(
                converter,
                &format!("arch {}", r.arch),
                &subnet,
                &options,
                scoring.dtype,
                &calibration,
                &eval,
            )
            .with_context(|| format!("--npu-accuracy {}: arch {}", scoring.dtype, r.arch))
        })
        .collect()
}
