"""Seconds per image of every method on one model, in one run, and the ratio to Grad-CAM.

    python benchmarks/methods.py [--model efficientnet_lite0] [--images 4] [--repeats 3] [--device auto]

Writes build/bench/methods.{csv,md,json}. Ratios carry across machines; seconds do not.
"""
import argparse
from pathlib import Path

import pandas as pd

import liftcam
from liftcam import report

# the cost classes come from the registry; CAM needs a GAP + linear head, which the default layer is not
CHEAP = [m for m in liftcam.METHODS if liftcam.REGISTRY[m].cost == "head" and m != "cam"]
COSTLY = [m for m in liftcam.METHODS if liftcam.REGISTRY[m].cost != "head"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--layer", default=None)
    p.add_argument("--images", type=int, default=4, help="sample photographs per call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of the cheap methods (median)")
    p.add_argument("--device", default="auto")
    p.add_argument("--nsamples", type=int, default=2048, help="SHAP-CAM KernelSHAP samples")
    p.add_argument("--out", default="build/bench/methods")
    a = p.parse_args(argv)

    s = liftcam.models.load(a.model, layer=a.layer, device=liftcam.models.device(a.device))
    x = liftcam.data.image_set(s, "samples", limit=a.images).images
    t = liftcam.timing.seconds_per_image(s, x, CHEAP, repeats=a.repeats)
    t.update(liftcam.timing.seconds_per_image(s, x[:1], COSTLY,
                                              options={"shap-cam": {"nsamples": a.nsamples}}))
    table = pd.DataFrame({"seconds per image": t}).rename_axis("method")
    table["ratio to grad-cam"] = table["seconds per image"] / t["grad-cam"]
    table["images per call"] = [len(x) if m in CHEAP else 1 for m in table.index]   # the costly ones on one
    params = {**vars(a), "device_used": str(s.device), "maps": s.body(x[:1]).shape[1]}
    report.save_table(table, Path(a.out), params, title=f"Cost per image on {a.model} ({s.device})")
    print(report.markdown_table(table))


if __name__ == "__main__":
    main()
