"""Command line: ``python -m liftcam check-inputs MODEL [IMAGENET_FOLDER] [--annotations PATH] [--eval-images N]``.

Checks, before any work, that a paper run has its weights and images (:func:`liftcam.data.check_paper_inputs`);
prints what was found, or every missing item with its fix, and exits 1 then.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """Run the command; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m liftcam", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check-inputs", help="check the weights and the ImageNet folder of a paper profile")
    c.add_argument("model", help="vgg16, resnet50 or efficientnet_lite0")
    c.add_argument("imagenet", nargs="?", default=None, help="the ILSVRC-2012 validation folder")
    c.add_argument("--annotations", default=None,
                   help="LOC_val_solution.csv or the folder of ILSVRC2012_val_*.xml box files (default: found in or "
                        "beside the folder)")
    c.add_argument("--eval-images", type=int, default=None, help="the profile's subset size: checked against the folder")
    a = p.parse_args(argv)
    from .data import PaperInputsError, check_paper_inputs

    try:
        found = check_paper_inputs(a.model, a.imagenet or None, annotations=a.annotations or None,
                                   eval_images=a.eval_images)
    except (PaperInputsError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(", ".join(f"{k}: {v}" for k, v in found.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
