"""The toy digits CNN: it learns, it is reproducible, and its layers admit exact Shapley values."""
import torch

import liftcam
from liftcam import toy


def test_digits_are_images_in_unit_range_with_a_seeded_split():
    x, y, xt, yt = toy.digits(seed=0)
    assert x.shape[1:] == (3, 8, 8) and len(x) + len(xt) == 1797 and len(xt) == 449
    assert x.min() >= 0 and x.max() == 1 and torch.equal(x[:, 0], x[:, 2])   # grey copied to RGB
    assert torch.equal(toy.digits(seed=0)[3], yt) and not torch.equal(toy.digits(seed=1)[3], yt)


def test_trains_to_the_stated_accuracy():
    net, x, y = toy.digits_cnn(seed=0)
    assert toy.accuracy(net, x, y) >= 0.9
    assert not net.training


def test_deterministic_for_a_seed_and_leaves_global_state_alone():
    torch.manual_seed(123)
    before, threads = torch.get_rng_state(), torch.get_num_threads()
    a, xa, _ = toy.digits_cnn(seed=3, epochs=1)
    assert torch.equal(torch.get_rng_state(), before) and torch.get_num_threads() == threads
    b, xb, _ = toy.digits_cnn(seed=3, epochs=1)
    c, _, _ = toy.digits_cnn(seed=4, epochs=1)
    assert torch.equal(xa, xb)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_linear_layer_gives_exact_shap_to_lift_cam_and_nonlinear_one_does_not():
    net, x, y = toy.digits_cnn(seed=0, epochs=2)
    x = x[:3]
    for layer, linear in (("relu3", True), ("relu2", False)):
        s = liftcam.models.split(net, layer)
        A = s.body(x)
        lift = liftcam.explain(s, x, method="lift-cam")
        phi, _ = liftcam.exact_shapley(s.head, A, lift.targets)
        # local accuracy holds for both (DeepLIFT's completeness, the Shapley efficiency axiom)
        torch.testing.assert_close(lift.coefficients.sum(1), phi.sum(1), rtol=1e-4, atol=1e-4)
        gap = float((lift.coefficients - phi).norm() / phi.norm())
        assert (gap < 1e-4) if linear else (gap > 1e-3), (layer, gap)
