"""The controlled benchmark: exact boxes, labels from the object alone, deterministic data and
training, exact Shapley ground truth by enumeration, LIFT-CAM = SHAP on the linear ResNet head."""
import copy
import itertools
import math

import numpy as np
import pytest
import torch

import liftcam
from liftcam import controlled
from liftcam.data import ImageSet

#: smoke-sized training (32 px, no distractors, 3 epochs of 1000 images): ~10 s, accuracy ~0.25 (chance 0.1)
SMOKE = controlled.Config(size=32, distractors=0, n_train=1000, n_test=300, epochs=3, batch_size=16, lr=5e-3,
                          threads=1)
#: a few steps only: real trained weights for the exact-Shapley checks, no accuracy claimed
TINY = controlled.Config(n_train=64, n_test=16, epochs=1, batch_size=32, threads=1)
CONFIGS = {"resnet": SMOKE, "vgg": TINY}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both K = 16 nets trained into a temporary cache: ({shape: SplitModel}, cache folder)."""
    cache = tmp_path_factory.mktemp("controlled")
    return {shape: controlled.load(shape, 16, config=CONFIGS[shape], cache_dir=cache, progress=False)
            for shape in controlled.SHAPES}, cache


def test_generate_is_deterministic_per_image():
    a = controlled.generate(6, seed=3)
    b = controlled.generate(6, seed=3)
    tail = controlled.generate(2, seed=3, start=4)             # image i does not depend on n or start
    assert isinstance(a, ImageSet)
    assert torch.equal(a.images, b.images) and a.labels == b.labels and a.boxes == b.boxes
    assert torch.equal(a.images[4:], tail.images) and a.boxes[4:] == tail.boxes and a.names[4:] == tail.names
    assert not torch.equal(a.images, controlled.generate(6, seed=4).images)
    assert a.images.dtype == torch.float32 and 0 <= a.images.min() and a.images.max() <= 1
    assert len(set(a.names)) == 6


def test_boxes_are_the_tight_boxes_of_the_pasted_pixels():
    s = controlled.generate(40, seed=1, size=72)
    assert s.images.shape == (40, 3, 72, 72) and s.masks.shape == (40, 72, 72)
    assert s.accept == [[label] for label in s.labels]
    for image, mask, (box,), obj, label in zip(s.images, s.masks.numpy(), s.boxes, s.objects, s.labels):
        rows, cols = np.nonzero(mask)
        assert box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        # the mask is the class's shape at the object's place, painted in the object's colour
        want = np.zeros_like(mask)
        want[obj.y:obj.y + obj.side, obj.x:obj.x + obj.side] = controlled.shape_mask(obj.shape, obj.side)
        assert np.array_equal(mask, want)
        painted = image.permute(1, 2, 0).numpy()[mask]
        assert np.allclose(painted, np.asarray(obj.color, dtype=np.float32))
        assert label == controlled.CLASSES.index(obj.shape)


def test_every_class_is_drawn_and_shapes_differ():
    s = controlled.generate(200, seed=0)
    assert set(s.labels) == set(range(len(controlled.CLASSES)))
    masks = [controlled.shape_mask(name, 24) for name in controlled.CLASSES]
    for (i, a), (j, b) in itertools.combinations(enumerate(masks), 2):
        assert (a != b).sum() >= 20, (controlled.CLASSES[i], controlled.CLASSES[j])


def test_class_depends_on_the_object_alone():
    s = controlled.generate(10, seed=2)
    pictures = controlled.backgrounds()
    assert set(pictures) == set(controlled.BACKGROUNDS)
    for obj, mask, (box,), label in zip(s.objects, s.masks.numpy(), s.boxes, s.labels):
        for name in ("brick", "coffee", "hubble_deep_field"):
            background = pictures[name][:64, :64]
            image, m, b = controlled.render(obj, background)
            assert np.array_equal(m, mask) and b == box and obj.label == label
            assert np.array_equal(image[~m], background[~m])              # only the object's pixels change
            assert np.allclose(image[m], np.asarray(obj.color, dtype=np.float32))


def test_short_training_beats_chance_and_is_cached(trained, monkeypatch):
    models, cache = trained
    for shape, s in models.items():
        test = controlled.heldout(CONFIGS[shape])
        assert s.categories == list(controlled.CLASSES) and s.layer == controlled.LAYERS[shape]
        assert s.report["cached"] is False
        assert s.report["heldout_accuracy"] == controlled.accuracy(s, test.images, test.labels)
    # 300 held-out images: chance accuracy is 0.1 +- 0.017
    assert models["resnet"].report["heldout_accuracy"] > 0.17, models["resnet"].report

    def no_training(*args, **kwargs):
        raise AssertionError("load retrained a cached model")

    monkeypatch.setattr(controlled, "train", no_training)
    again = controlled.load("resnet", 16, config=SMOKE, cache_dir=cache, progress=False)
    assert again.report["cached"] is True
    x = controlled.heldout(SMOKE, n=8).images
    assert torch.equal(again(x), models["resnet"](x))
    with pytest.raises(FileNotFoundError):
        controlled.load("vgg", 16, config=TINY, cache_dir=cache / "empty", train_if_missing=False)


def test_training_is_deterministic():
    a, ra = controlled.train("vgg", 16, TINY, progress=False)
    b, rb = controlled.train("vgg", 16, TINY, progress=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert ra["heldout_accuracy"] == rb["heldout_accuracy"]


def test_cache_key_follows_the_configuration(tmp_path, monkeypatch):
    base = controlled.cache_key("vgg", 16)
    assert base == controlled.cache_key("vgg", 16, controlled.Config())
    assert len({base, controlled.cache_key("vgg", 128), controlled.cache_key("resnet", 16),
                controlled.cache_key("vgg", 16, controlled.Config(seed=1))}) == 4
    monkeypatch.setenv("LIFTCAM_CACHE", str(tmp_path))
    assert controlled.cache_folder() == tmp_path / "controlled"
    assert controlled.cache_folder(tmp_path / "x") == tmp_path / "x"


def _brute_force_shapley(v: np.ndarray, K: int) -> np.ndarray:
    """Shapley's subset formula, phi_k = sum over S not holding k of |S|! (K-|S|-1)! / K! (v(S + k) - v(S)),
    summed over every S; ``v[code]`` is the value of the coalition whose members are the set bits of code."""
    codes = np.arange(1 << K)
    size = np.array([bin(c).count("1") for c in range(1 << K)])
    weight = np.array([math.factorial(n) * math.factorial(K - n - 1) / math.factorial(K) for n in range(K)])
    phi = np.zeros(K)
    for k in range(K):
        S = codes[(codes >> k) & 1 == 0]                                # coalitions without k
        phi[k] = np.sum(weight[size[S]] * (v[S | (1 << k)] - v[S]))
    return phi


def test_exact_shapley_on_the_vgg_head_equals_the_subset_formula(trained):
    """The ground truth of the benchmark (all 2^16 coalitions) against Shapley's formula, written out."""
    s = trained[0]["vgg"]
    head = copy.deepcopy(s.head).double()
    x = controlled.heldout(TINY, n=1).images
    with torch.no_grad():
        A = s.body(x).double()                                          # (1, 16, 8, 8)
    K = A.shape[1]
    target = int(head(A).argmax())
    z = ((torch.arange(1 << K)[:, None] >> torch.arange(K)) & 1).double()     # row code: the bits of code
    with torch.no_grad():
        v = torch.cat([head(z[i:i + 8192, :, None, None] * A)[:, target] for i in range(0, len(z), 8192)]).numpy()
    want = _brute_force_shapley(v, K)
    phi, phi0 = liftcam.exact_shapley(head, A, [target])
    assert np.allclose(phi[0].numpy(), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    assert float(phi0) == pytest.approx(v[0])
    assert want.sum() == pytest.approx(v[-1] - v[0])
    assert np.abs(want).max() > 0                                     # the game is not trivial


def test_lift_cam_equals_exact_shapley_on_the_resnet_head(trained):
    """ResNet-shaped head = GAP + fc, linear: LIFT-CAM's alpha_k = w_ck mean(A_k) = phi_k."""
    s = trained[0]["resnet"]
    x = controlled.heldout(SMOKE, n=2).images
    e = liftcam.explain(s, x, method="lift-cam")
    with torch.no_grad():
        A = s.body(x)
    phi, _ = liftcam.exact_shapley(s.head, A, e.targets)
    scale = phi.abs().max()
    assert scale > 0
    assert torch.allclose(e.coefficients, phi, rtol=1e-5, atol=1e-5 * scale)
    w = s.head.fc.weight[e.targets]                                   # (B, K)
    assert torch.allclose(phi, w * A.mean((2, 3)), rtol=1e-5, atol=1e-5 * scale)
