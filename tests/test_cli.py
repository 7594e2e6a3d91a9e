"""python -m liftcam explain: CAMs of image files, written as overlay PNGs and .npy maps."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import liftcam
from liftcam import models
from liftcam.__main__ import main
from liftcam.data import _package_file, load_image
from test_targets import tiny

PHOTOS = [_package_file("skimage", "data/chelsea.png"), _package_file("skimage", "data/coffee.png")]


def test_explain_two_photographs_with_the_default_model(tmp_path, effnet, capsys):
    out = tmp_path / "out"
    assert main(["explain", *map(str, PHOTOS), "--out", str(out)]) == 0
    manifest = json.loads((out / "explain.json").read_text())
    assert manifest["layer"] == effnet.layer and manifest["method"] == "lift-cam"
    for p, row in zip(PHOTOS, manifest["images"]):
        x = effnet.preprocess(load_image(p))[None]
        e = liftcam.explain(effnet, x, "lift-cam")
        m = np.load(out / f"{p.stem}.npy")
        assert m.dtype == np.float32 and m.shape == (224, 224)
        assert np.abs(m - e.maps[0].numpy()).max() <= 1e-5
        assert row["class"] == int(e.targets[0]) and row["class_name"] == effnet.categories[row["class"]]
        png = np.asarray(Image.open(out / f"{p.stem}.png"))
        want = (liftcam.plots.overlay(x[0], m) * 255).round().astype(np.uint8)
        assert png.shape == (224, 224, 3) and np.abs(png.astype(int) - want).max() <= 1
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(f"{r['class_name']}" in line for r, line in zip(manifest["images"], printed))


def test_bad_input_exits_1_with_the_fix(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    cases = [([str(PHOTOS[0]), str(bad)], "notes.png.*not a readable image file.*PNG, JPEG"),
             ([str(tmp_path / "missing.jpg")], "no such file"),
             ([str(PHOTOS[0]), "--layer", "blocks.99"], "unknown layer 'blocks.99'.*valid layers"),
             ([str(PHOTOS[0]), "--target", "1000"], "--target 1000 is out of range.*1000 classes"),
             ([str(PHOTOS[0]), "--method", "gradcam"], "unknown method 'gradcam'.*grad-cam"),
             ([str(PHOTOS[0]), str(tmp_path / "x" / "chelsea.png")], "both be written as chelsea.png")]
    for args, message in cases:
        assert main(["explain", *args, "--out", str(out)]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and re.search(message, err), (args, err)
    assert not (out / "chelsea.npy").exists()                        # nothing written before the inputs are good


def test_a_saved_module_file_and_a_grayscale_odd_sized_image(tmp_path, capsys):
    net = tiny()
    torch.save(net, tmp_path / "tiny.pt")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    gray = tmp_path / "gray.png"
    Image.fromarray((np.arange(13 * 21) % 251).astype(np.uint8).reshape(13, 21), mode="L").save(gray)
    out = tmp_path / "out"
    args = ["explain", str(gray), "--model", str(tmp_path / "tiny.pt"), "--size", "16", "--out", str(out)]
    assert main([*args, "--layer", "3", "--method", "grad-cam", "--target", "2"]) == 0
    s = models.split(net, "3", normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD))
    x = models.ImageTransform(resize=(16, 16))(load_image(gray))[None]
    want = liftcam.explain(s, x, "grad-cam", targets=2).maps[0].numpy()
    assert np.abs(np.load(out / "gray.npy") - want).max() <= 1e-6
    assert json.loads((out / "explain.json").read_text())["images"][0]["class"] == 2
    capsys.readouterr()
    assert main(args) == 1 and "pass --layer" in capsys.readouterr().err
    assert main([*args, "--layer", "3", "--target", "6"]) == 1 and "6 classes (0..5)" in capsys.readouterr().err
    args[3] = str(tmp_path / "weights.pt")
    assert main([*args, "--layer", "3"]) == 1 and "state dict" in capsys.readouterr().err


def test_python_m_liftcam_explain_exits_1_on_a_bad_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(liftcam.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "liftcam", "explain", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "bad.jpg" in r.stderr and "not a readable image file" in r.stderr


def test_check_inputs_is_still_a_subcommand(capsys):
    assert main(["check-inputs", "efficientnet_lite0"]) == 1                 # no ImageNet folder here
    assert "ImageNet folder: none given" in capsys.readouterr().err
