"""Cost model of the paper profiles: hours of `make reproduce PROFILE=vgg16|resnet50` on one device.

    python benchmarks/paper_cost.py                  # measure the pieces here, model one GPU from stated assumptions
    python benchmarks/paper_cost.py --device cuda    # on a GPU: the device pieces are measured, not assumed

Every method's cost is made of three measured pieces (liftcam.timing.floor_seconds, random weights at the
paper's layers: VGG16 features.29, ResNet50 layer4) and the host-side work of the two regressions (shap's
KernelExplainer for SHAP-CAM, captum's Lime + Lasso for LIME-CAM), which runs on the CPU whatever the
device. The counts of calls come from the profile (params/<profile>.yaml): eval_images, K, the SHAP budgets,
the deletion/insertion steps. Without a GPU the device pieces are the CPU's ones divided by the speed-ups
in ASSUMED_SPEEDUP (stated in the table); the host pieces are measured here. Writes
figures/bench/paper_cost.{csv,md,json}.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torchvision
import yaml

from liftcam import explain, models, report, shapley, timing

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"vgg16": "features.29", "resnet50": "layer4"}
#: the nine methods of notebooks 03-06
METHODS = 9
#: assumed speed-up of one modern GPU (H100-class, float32/TF32, large batches) over this CPU for each device
#: piece, used only when no GPU is measured; conservative against published throughputs (VGG16 about 1,500 and
#: ResNet50 about 3,000 images a second on an H100 in float32) and a 2-core CPU's 2-5 images a second
ASSUMED_SPEEDUP = {"forward": 300.0, "model per input": 300.0, "head per evaluation": 100.0}


def _model(arch: str, device) -> models.SplitModel:
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)().eval()
    return models.split(net, LAYERS[arch], normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD)).to(device)


def _host_seconds(s: models.SplitModel, x: torch.Tensor, nsamples: int, chunk: int) -> dict[str, float]:
    """Seconds per image of the regressions' host work (the method's time minus its head evaluations) and
    the device pieces; KernelSHAP's host work is measured at ``nsamples`` (its cost grows linearly in it)."""
    pieces = timing.floor_seconds(s, x, chunk=chunk, repeats=1)
    K = s.body(x[:1]).shape[1]
    t0 = time.perf_counter()
    shapley.ground_truth(s, x[:1], nsamples=nsamples, seed=0, cache_dir=None, progress=False)
    shap = time.perf_counter() - t0 - nsamples * pieces["head per evaluation"]
    explain(s, x[:1], "lime-cam")                                     # one untimed call: captum's imports
    t0 = time.perf_counter()
    explain(s, x[:1], "lime-cam")
    lime = time.perf_counter() - t0 - K * pieces["head per evaluation"]
    return {"shap host": max(shap, 0.0), "lime host": max(lime, 0.0), **pieces, "K": K}


def hours(profile: dict, p: dict, *, speedup: dict) -> dict[str, float]:
    """Hours per notebook of one profile from the pieces ``p`` (seconds) and the profile's counts."""
    dev = {k: p[k] / speedup.get(k, 1.0) for k in ("forward", "model per input", "head per evaluation")}
    n, K = int(profile["eval_images"]), int(p["K"])
    steps = math.ceil(224 * 224 / int(profile.get("pixels_per_step", 224)))
    seeds = int(profile.get("shap_seeds", 1) or 1)
    kernel = lambda ns: ns * dev["head per evaluation"] + p["shap host"] * ns / p["shap nsamples"]   # noqa: E731
    if profile.get("shap_estimator", "kernel") == "closed-form":
        truth = n * (K + 1) * dev["head per evaluation"]
    else:
        truth = n * seeds * kernel(int(profile["shap_nsamples"]))
    study = int(profile.get("convergence_images", 1)) * (
        sum(kernel(ns) for ns in profile.get("convergence_nsamples", [])) * int(profile.get("convergence_seeds", 2))
        + kernel(int(profile.get("convergence_reference", profile["shap_nsamples"]))))
    score_n = n if profile.get("score_cam_images") is None else min(n, int(profile["score_cam_images"]))
    explanations = (score_n * K * dev["model per input"] + n * K * dev["head per evaluation"]          # Score, Ablation
                    + n * (K * dev["head per evaluation"] + p["lime host"]) + n * 4 * dev["forward"])  # LIME, gradients
    curves = METHODS * n * (2 * (steps + 1) * dev["model per input"] + 6 * dev["forward"])           # 05: del/ins, AD, IC
    rows = {"00-01": n * dev["forward"] + 60, "02 ground truth": truth + study, "03-06 explanations": explanations,
            "05 curves": curves, "07 cost": 600}
    return {k: v / 3600 for k, v in rows.items()}


def main(argv=None) -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--device", default="cpu")
    a.add_argument("--out", default=str(REPO / "figures" / "bench"))
    a.add_argument("--chunk", type=int, default=None, help="copies per timed pass (default 16 on a CPU, 256 on a GPU)")
    a.add_argument("--shap-nsamples", type=int, default=None,
                   help="KernelSHAP samples of the host measurement (default 2K + 256; scaled to the profile's)")
    args = a.parse_args(argv)
    device = torch.device(args.device)
    speedup = {} if device.type == "cuda" else ASSUMED_SPEEDUP
    table = []
    for arch in ("vgg16", "resnet50"):
        profile = yaml.safe_load((REPO / "params" / f"{arch}.yaml").read_text())
        s = _model(arch, device)
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
        K = s.body(x).shape[1]
        ns = args.shap_nsamples or 2 * K + 256
        chunk = args.chunk or (256 if device.type == "cuda" else 16)
        p = {**_host_seconds(s, x, ns, chunk), "shap nsamples": ns}
        h = hours(profile, p, speedup=speedup)
        table.append({"profile": arch, "layer": LAYERS[arch], "K": p["K"], "eval_images": profile["eval_images"],
                      **{f"s {k}": p[k] for k in ("forward", "model per input", "head per evaluation", "shap host",
                                                  "lime host")},
                      **{f"h {k}": v for k, v in h.items()}, "h total": sum(h.values()),
                      "device pieces": "measured" if not speedup else f"CPU / {speedup}"})
    import pandas as pd

    df = pd.DataFrame(table).set_index("profile")
    report.save_table(df, Path(args.out) / "paper_cost", {"device": str(device), "assumed_speedup": speedup},
                      title=f"Hours of the paper profiles on one device ({device.type}; pieces in seconds)",
                      floatfmt=".4g")
    print(df.T.to_string())


if __name__ == "__main__":
    main()
