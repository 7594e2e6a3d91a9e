"""SHAP-CAM and exact Shapley values against oracles: enumeration, linear heads, efficiency."""
import os
from itertools import combinations
from math import factorial

import numpy as np
import pytest
import torch
from torch import nn

import liftcam
from liftcam import shapley
from liftcam.models import split


def tiny_cnn(K=8, classes=5, seed=0):
    """conv 3x3 -> ReLU (the split, K maps of 6x6 for 8x8 images) -> non-linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, K, 3), nn.ReLU(), nn.Conv2d(K, 6, 1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, classes))


def linear_cnn(K=6, classes=4, seed=0):
    """conv -> ReLU (the split) -> GAP -> Linear: a linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, K, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(K, classes))


def images(B=3, seed=1):
    torch.manual_seed(seed)
    return torch.rand(B, 3, 8, 8)


class Counting(nn.Module):
    """Wraps a head; counts the rows it evaluates."""

    def __init__(self, head):
        super().__init__()
        self.inner, self.rows = head, 0

    def forward(self, a):
        self.rows += a.shape[0]
        return self.inner(a)


def brute_force_shapley(head, a, target):
    """Shapley values of v(S) = head(A_S)[target] by the textbook sum over subsets, plain Python."""
    K = a.shape[0]
    memo = {}

    def v(S):
        S = frozenset(S)
        if S not in memo:
            z = torch.tensor([1.0 if k in S else 0.0 for k in range(K)])
            with torch.no_grad():
                memo[S] = float(head((a * z[:, None, None])[None])[0, target])
        return memo[S]

    phi = []
    for k in range(K):
        others = [j for j in range(K) if j != k]
        total = 0.0
        for r in range(K):
            for S in combinations(others, r):
                total += factorial(r) * factorial(K - r - 1) / factorial(K) * (v(S + (k,)) - v(S))
        phi.append(total)
    return phi, v(())


def head_scores(head, A, targets):
    with torch.no_grad():
        return head(A)[torch.arange(len(targets)), torch.as_tensor(targets)]


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------------
# exact_shapley

@pytest.mark.parametrize("K", [4, 6])
def test_exact_shapley_equals_brute_force_on_nonlinear_head(K):
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(K, 5, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5, 3))
    A = torch.randn(3, K, 3, 3)
    targets = [0, 2, 1]
    phi, phi0 = liftcam.exact_shapley(head, A, targets)
    for b, t in enumerate(targets):
        want, want0 = brute_force_shapley(head, A[b], t)
        torch.testing.assert_close(phi[b], torch.tensor(want, dtype=phi.dtype), rtol=1e-5, atol=1e-6)
        assert phi0[b].item() == pytest.approx(want0, abs=1e-6)
    # a non-trivial game: the values are not all equal and not the linear w * mean(A)
    assert phi.std(1).min() > 1e-3


def test_exact_shapley_efficiency_and_batch_size_parity():
    s = split(tiny_cnn(K=8), "1")
    with torch.no_grad():
        A = s.body(images(2))
    targets = [4, 2]
    phi, phi0 = liftcam.exact_shapley(s.head, A, targets)
    full = head_scores(s.head, A, targets)
    empty = head_scores(s.head, torch.zeros_like(A), targets)
    torch.testing.assert_close(phi.sum(1), full - empty, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(phi0, empty)
    for bs in (1, 7):
        phi_bs, _ = liftcam.exact_shapley(s.head, A, targets, batch_size=bs)
        torch.testing.assert_close(phi_bs, phi, rtol=1e-6, atol=1e-7)


def test_exact_shapley_refuses_many_maps():
    with pytest.raises(ValueError, match=r"K = 21.*shap-cam"):
        liftcam.exact_shapley(lambda a: a.flatten(1), torch.zeros(1, 21, 1, 1), [0])


# ------------------------------------------------------------------------------------------
# SHAP-CAM (KernelSHAP through liftcam.explain)

@pytest.mark.parametrize("K", [8, 12])
def test_shap_cam_enumerating_equals_exact_and_is_efficient(K):
    # K = 12 > 10 also checks that l1_reg is off (shap's default would keep 10 maps)
    s = split(tiny_cnn(K=K), "1")
    x, targets = images(), [1, 3, 0]
    e = liftcam.explain(s, x, method="shap-cam", targets=targets, nsamples=2 ** K, seed=0)
    phi, phi0 = liftcam.exact_shapley(s.head, s.body(x), targets)
    assert rel_l2(e.coefficients, phi) <= 1e-2
    torch.testing.assert_close(e.coefficients, phi, rtol=1e-4, atol=1e-5)  # enumeration: exact in fact
    if K == 12:  # l1_reg off: shap's default would give at most 10 maps a non-zero value
        assert ((e.coefficients.abs() > 1e-6).sum(1) == 11).all()  # all but the dead (all-zero) map
    empty = head_scores(s.head, torch.zeros(3, K, 6, 6), targets)
    torch.testing.assert_close(e.extras["phi0"], empty)
    torch.testing.assert_close(e.coefficients.sum(1), e.logits[torch.arange(3), e.targets] - empty,
                               rtol=1e-5, atol=1e-5)
    assert e.extras["nsamples"] == 2 ** K


def test_shap_cam_sampled_is_efficient_and_close_to_exact():
    s = split(tiny_cnn(K=10), "1")
    x = images(2)
    e = liftcam.explain(s, x, method="shap-cam", nsamples=600, seed=0)  # 600 of 1022 coalitions
    phi, _ = liftcam.exact_shapley(s.head, s.body(x), e.targets)
    torch.testing.assert_close(e.coefficients.sum(1), e.logits[torch.arange(2), e.targets] - e.extras["phi0"],
                               rtol=1e-5, atol=1e-5)
    assert rel_l2(e.coefficients, phi) <= 0.1


def test_linear_head_shapley_is_weight_times_mean_and_equals_lift_cam():
    model = linear_cnn(K=6, classes=4)
    s = split(model, "1")
    x, targets = images(3), [3, 1, 0]
    A = s.body(x)                                                    # (3, 6, 6, 6)
    W = model[4].weight.detach()                                     # (4, 6)
    by_hand = torch.stack([W[t] * A[b].mean((1, 2)) for b, t in enumerate(targets)])
    phi, _ = liftcam.exact_shapley(s.head, A, targets)
    torch.testing.assert_close(phi, by_hand, rtol=1e-4, atol=1e-6)
    for n in (64, 20):  # an additive game: KernelSHAP is exact even from a sample
        e = liftcam.explain(s, x, method="shap-cam", targets=targets, nsamples=n, seed=0)
        torch.testing.assert_close(e.coefficients, by_hand, rtol=1e-4, atol=1e-6)
    lift = liftcam.explain(s, x, method="lift-cam", targets=targets)
    torch.testing.assert_close(lift.coefficients, by_hand, rtol=1e-4, atol=1e-6)


def test_seed_reproducible_and_caller_rng_untouched():
    s = split(tiny_cnn(K=8), "1")
    x = images(2)
    np.random.seed(123)
    before = np.random.get_state()
    a = liftcam.explain(s, x, method="shap-cam", nsamples=40, seed=0).coefficients  # 40 < 2^8 - 2
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    b = liftcam.explain(s, x, method="shap-cam", nsamples=40, seed=0).coefficients
    c = liftcam.explain(s, x, method="shap-cam", nsamples=40, seed=1).coefficients
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, rtol=1e-3, atol=1e-4)


def test_caller_rng_restored_on_error():
    class Failing(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.inner = head

        def forward(self, a):
            if a.shape[0] != 2:  # the forward pass runs (2, ...); KernelSHAP's calls fail
                raise RuntimeError("head failed")
            return self.inner(a)

    s = split(tiny_cnn(K=8), "1")
    s.head = Failing(s.head)
    np.random.seed(7)
    before = np.random.get_state()
    with pytest.raises(RuntimeError, match="head failed"):
        liftcam.explain(s, images(2), method="shap-cam", nsamples=40, seed=0)
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_shap_cam_batch_size_parity():
    s = split(tiny_cnn(K=8), "1")
    x = images(2)
    one = liftcam.explain(s, x, method="shap-cam", nsamples=50, seed=3, batch_size=1).coefficients
    seven = liftcam.explain(s, x, method="shap-cam", nsamples=50, seed=3, batch_size=7).coefficients
    torch.testing.assert_close(one, seven, rtol=1e-5, atol=1e-6)


def test_efficiency_check_catches_an_inconsistent_head():
    class Drifting(nn.Module):  # batch-dependent: a head that is not a function of its input
        def __init__(self, head):
            super().__init__()
            self.inner = head

        def forward(self, a):
            return self.inner(a) + (0.0 if a.shape[0] == 2 else 5.0)

    s = split(tiny_cnn(K=8), "1")
    s.head = Drifting(s.head)
    with pytest.raises(shapley.LocalAccuracyError, match="local accuracy"):
        liftcam.explain(s, images(2), method="shap-cam", nsamples=40)


# ------------------------------------------------------------------------------------------
# ground_truth: the disk cache

def npz_files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix == ".npz" and not p.name.startswith(".tmp"))


def test_ground_truth_is_cached_and_reused(tmp_path):
    s = split(tiny_cnn(K=8), "1")
    x = images(3)
    gt = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False, key="tiny")
    ref = liftcam.explain(s, x, method="shap-cam", nsamples=64, seed=0)
    torch.testing.assert_close(gt.coefficients, ref.coefficients)
    torch.testing.assert_close(gt.extras["phi0"], ref.extras["phi0"])
    torch.testing.assert_close(gt.maps, ref.maps)
    assert len(npz_files(tmp_path)) == 3 and not list(tmp_path.glob(".tmp*"))
    assert not gt.extras["cached"].any()

    s.head = Counting(s.head)                # a wrapped head is another model digest: key= keeps the entries
    again = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False, key="tiny")
    assert s.head.rows == 3  # the forward pass only: no SHAP evaluation
    assert again.extras["cached"].all()
    assert torch.equal(again.coefficients, gt.coefficients)

    # another seed, nsamples or target is another key: computed, not read
    other = shapley.ground_truth(s, x[:1], nsamples=64, seed=1, cache_dir=tmp_path, progress=False, key="tiny")
    assert not other.extras["cached"].any() and s.head.rows > 4
    target = (gt.targets[0].item() + 1) % 5
    assert not shapley.ground_truth(s, x[:1], target, nsamples=64, seed=0, cache_dir=tmp_path,
                                    progress=False, key="tiny").extras["cached"].any()


def test_ground_truth_resumes_after_interruption(tmp_path, monkeypatch):
    s = split(tiny_cnn(K=8), "1")
    x = images(3)
    real = shapley._kernel_shap
    calls = []

    def killed_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the run were stopped during image 2
        return real(*args, **kwargs)

    monkeypatch.setattr(shapley, "_kernel_shap", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    assert len(npz_files(tmp_path)) == 1
    # a crash inside a write leaves a half-written temp file behind: it must never be read
    (tmp_path / ".tmp-crashed.npz").write_bytes(b"PK\x03\x04 truncated")

    calls.clear()
    monkeypatch.setattr(shapley, "_kernel_shap", lambda *a, **k: calls.append(1) or real(*a, **k))
    gt = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    assert len(calls) == 2  # images 2 and 3 only
    assert gt.extras["cached"].tolist() == [True, False, False]
    ref = liftcam.explain(s, x, method="shap-cam", nsamples=64, seed=0)
    torch.testing.assert_close(gt.coefficients, ref.coefficients)

    # a result file cut short (not written by this module's atomic write) is recomputed
    bad = gt.extras["files"][1]
    bad.write_bytes(bad.read_bytes()[:40])
    calls.clear()
    with pytest.warns(UserWarning, match="unreadable"):
        again = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1 and again.extras["cached"].tolist() == [True, False, True]
    torch.testing.assert_close(again.coefficients, ref.coefficients)


def test_cache_folder_default_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFTCAM_CACHE", raising=False)
    root = shapley.cache_folder()
    assert root.parts[-3:] == ("data", "cache", "shap") and (root.parents[2] / "lib" / "liftcam").is_dir()
    monkeypatch.setenv("LIFTCAM_CACHE", str(tmp_path))
    assert shapley.cache_folder() == tmp_path / "shap"
    assert shapley.cache_folder(tmp_path / "x") == tmp_path / "x"


def test_ground_truth_with_a_stale_hand_key_fails_loudly(tmp_path):
    x = images(1)
    shapley.ground_truth(split(tiny_cnn(K=8, seed=0), "1"), x, 0, nsamples=32, cache_dir=tmp_path,
                         key="tiny", progress=False)
    other = split(tiny_cnn(K=8, seed=5), "1")  # new weights under the same hand-given key
    with pytest.raises(shapley.LocalAccuracyError, match="does not fit this model"):
        shapley.ground_truth(other, x, 0, nsamples=32, cache_dir=tmp_path, key="tiny", progress=False)
    # the default key includes a digest of the weights: no clash
    assert not shapley.ground_truth(other, x, 0, nsamples=32, cache_dir=tmp_path,
                                    progress=False).extras["cached"].any()


# ------------------------------------------------------------------------------------------
# coalition_values: the game itself

def test_coalition_values_is_the_masked_game_and_its_shapley_values_are_exact_shapley():
    s = split(tiny_cnn(K=6), "1")
    x, targets = images(2), [1, 3]
    with torch.no_grad():
        A = s.body(x)                                                # (2, 6, 6, 6)
    z = torch.tensor([[int(b) for b in f"{c:06b}"[::-1]] for c in range(64)])  # all 2^6 coalitions, bit k = map k
    v = shapley.coalition_values(s.head, A, targets, z, batch_size=5)            # (2, 64)
    torch.testing.assert_close(v[:, -1], head_scores(s.head, A, targets))          # all present: F_c(A)
    torch.testing.assert_close(v[:, 0], head_scores(s.head, torch.zeros_like(A), targets))  # none: F_c(0)
    for b, t in enumerate(targets):                                   # one coalition by hand: maps 0 and 3 kept
        keep = torch.zeros(6)
        keep[[0, 3]] = 1
        assert v[b, 1 + 8].item() == pytest.approx(head_scores(s.head, (A[b] * keep[:, None, None])[None], [t]).item(),
                                                   abs=1e-6)
    # the Shapley formula applied to these values gives exact_shapley's answer
    phi, _ = liftcam.exact_shapley(s.head, A, targets)
    size = z.sum(1)
    for k in range(6):
        w = torch.tensor([factorial(int(n) - 1) * factorial(6 - int(n)) / factorial(6) if z[i, k] else
                          -factorial(int(n)) * factorial(6 - int(n) - 1) / factorial(6) for i, n in enumerate(size)],
                         dtype=torch.float64)
        torch.testing.assert_close((v.double() @ w).float(), phi[:, k], rtol=1e-5, atol=1e-6)


def test_coalition_values_checks_its_coalitions():
    with pytest.raises(ValueError, match=r"z must hold coalitions \(n, K = 3\)"):
        shapley.coalition_values(lambda a: a.flatten(1), torch.zeros(1, 3, 1, 1), [0], torch.ones(2, 4))


def test_ground_truth_recomputes_an_edited_or_nan_entry_and_removes_stale_temporary_files(tmp_path):
    s = split(tiny_cnn(K=8), "1")
    x = images(1)
    gt = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    path = gt.extras["files"][0]
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(path.with_suffix(""), **{**arrays, "phi": arrays["phi"][::-1].copy()})   # reversed: the sum is intact
    with pytest.warns(UserWarning, match="sha256"):
        again = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    assert not again.extras["cached"].any()
    torch.testing.assert_close(again.coefficients, gt.coefficients)
    nan = {k: v for k, v in arrays.items() if k not in ("key", "digest")}
    nan["phi"] = np.full_like(arrays["phi"], np.nan)                  # cache.write refuses NaN: written by hand
    np.savez(path.with_suffix(""), **nan, key=arrays["key"], digest=np.array(liftcam.cache._payload_digest(nan)))
    with pytest.warns(UserWarning, match="NaN"):
        again = shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(again.coefficients, gt.coefficients)
    stale = tmp_path / ".tmp-x.npz.abc"
    stale.write_bytes(b"PK")
    os.utime(stale, (0, 0))
    shapley.ground_truth(s, x, nsamples=64, seed=0, cache_dir=tmp_path, progress=False)
    assert not stale.exists()


def test_the_cache_key_covers_the_code_of_the_split():
    net = tiny_cnn(K=8)
    gelu = nn.Sequential(*[nn.GELU() if isinstance(m, nn.ReLU) else m for m in net])
    a, b = split(net, "1"), split(gelu, "1")
    assert liftcam.cache.weights_digest(a) == liftcam.cache.weights_digest(b)
    assert liftcam.cache.model_digest(a) != liftcam.cache.model_digest(b)


def test_reference_seeds_are_independent_of_the_estimates_and_ground_truth():
    """The convergence reference never shares a seed with an estimate it measures (issue 22)."""
    used = list(range(0, 4)) + [shapley.REFERENCE_SEED_OFFSET + 1]
    got = shapley.reference_seeds(0, 3, used)
    assert got == [shapley.REFERENCE_SEED_OFFSET, shapley.REFERENCE_SEED_OFFSET + 2, shapley.REFERENCE_SEED_OFFSET + 3]
    assert not set(got) & set(used)
    assert shapley.reference_seeds(5, 2, []) == [shapley.REFERENCE_SEED_OFFSET + 5, shapley.REFERENCE_SEED_OFFSET + 6]
    with pytest.raises(ValueError, match="at least one seed"):
        shapley.reference_seeds(0, 0, used)


def test_still_rising_compares_the_last_step_with_the_reference_error():
    assert shapley.still_rising([4096, 8192, 16384], [0.804, 0.914, 0.958])          # the numbers
    assert not shapley.still_rising([4096, 8192, 16384], [0.804, 0.914, 0.958], error=0.05)
    assert not shapley.still_rising([16384, 4096, 8192], [0.957, 0.9, 0.958])        # order by budget
    assert not shapley.still_rising([4096], [0.9])
