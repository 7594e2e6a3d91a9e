"""liftcam.explaining: a cached explanation equals a fresh one; the cache is keyed, partial and robust."""
import dataclasses
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import liftcam
from liftcam import core, explaining
from liftcam.models import split


def tiny_model(seed=0):
    """conv -> ReLU (the split, 4 maps of 6 x 6 for 8 x 8 images) -> a non-linear head."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return split(net, "1", name="tiny")


def images(B=3, seed=1):
    return torch.rand(B, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def counting(monkeypatch):
    """Counts the images each rule is asked to explain."""
    seen = []
    for name, m in list(core.REGISTRY.items()):
        def wrapped(batch, _rule=m.rule, _name=name, **kw):
            seen.append((_name, batch.activations.shape[0]))
            return _rule(batch, **kw)
        monkeypatch.setitem(core.REGISTRY, name, dataclasses.replace(m, rule=wrapped))
    return seen


@pytest.mark.parametrize("method", ["grad-cam", "lift-cam", "ablation-cam", "lime-cam"])
def test_cached_equals_fresh_and_is_read_back(tmp_path, method, counting):
    s, x = tiny_model(), images()
    fresh = liftcam.explain(s, x, method=method)
    first = explaining.explain_cached(s, x, method, cache_dir=tmp_path)
    second = explaining.explain_cached(s, x, method, cache_dir=tmp_path)
    # explain once, explain_cached once (a costly method image by image, each stored when done), then disk
    assert counting == [(method, 3)] + ([(method, 3)] if core.REGISTRY[method].cost == "head" else [(method, 1)] * 3)
    assert not first.extras["cached"].any() and second.extras["cached"].all()
    for e in (first, second):
        torch.testing.assert_close(e.coefficients, fresh.coefficients)
        torch.testing.assert_close(e.maps, fresh.maps)
        torch.testing.assert_close(e.raw, fresh.raw)
        assert torch.equal(e.targets, fresh.targets) and e.method == method
    assert len(list((tmp_path / "maps").glob("*.npz"))) == 3


def test_only_missing_images_are_computed(tmp_path, counting):
    s, x = tiny_model(), images(4)
    explaining.explain_cached(s, x[1:3], "lime-cam", cache_dir=tmp_path)
    e = explaining.explain_cached(s, x, "lime-cam", cache_dir=tmp_path)
    assert counting == [("lime-cam", 1)] * 4                           # image by image, each stored when done
    assert e.extras["cached"].tolist() == [False, True, True, False]
    torch.testing.assert_close(e.maps, liftcam.explain(s, x, method="lime-cam").maps)


def test_key_separates_options_targets_and_models(tmp_path, counting):
    s, x = tiny_model(), images(2)
    explaining.explain_cached(s, x, "lime-cam", cache_dir=tmp_path, seed=0)
    explaining.explain_cached(s, x, "lime-cam", cache_dir=tmp_path, seed=0, batch_size=1)  # not in the key
    assert sum(n for _, n in counting) == 2                                                # images explained
    explaining.explain_cached(s, x, "lime-cam", cache_dir=tmp_path, seed=1)                # another seed
    other_class = (s(x).argmax(1) + 1) % 5                                                  # not the predicted one
    explaining.explain_cached(s, x, "lime-cam", targets=other_class, cache_dir=tmp_path, seed=0)
    other = explaining.explain_cached(tiny_model(seed=5), x, "lime-cam", cache_dir=tmp_path, seed=0)
    assert sum(n for _, n in counting) == 8 and not other.extras["cached"].any()
    assert len(list((tmp_path / "maps").glob("*.npz"))) == 8


def test_a_damaged_file_is_recomputed_with_a_warning(tmp_path):
    s, x = tiny_model(), images(1)
    e = explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
    e.extras["files"][0].write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable"):
        again = explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
    assert not again.extras["cached"].any()
    torch.testing.assert_close(again.maps, e.maps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path).extras["cached"].all()


def test_explain_all_limits_and_ground_truth(tmp_path):
    s, x = tiny_model(), images(3)
    exps = explaining.explain_all(s, x, ["grad-cam", "ablation-cam", "shap-cam", "lime-cam", "score-cam"],
                                    cache_dir=tmp_path, limits={"ablation-cam": 1, "lime-cam": 2, "score-cam": 0},
                                    options={"ablation-cam": {"ablation": "pytorch-grad-cam"}},
                                    shap_nsamples=64, seed=7, batch_size=5)
    assert list(exps) == ["grad-cam", "ablation-cam", "shap-cam", "lime-cam"]   # score-cam limited to 0 images
    assert [len(e.maps) for e in exps.values()] == [3, 1, 3, 2]
    torch.testing.assert_close(exps["lime-cam"].maps, liftcam.explain(s, x[:2], method="lime-cam", seed=7).maps)
    torch.testing.assert_close(exps["ablation-cam"].maps,
                               liftcam.explain(s, x[:1], method="ablation-cam", ablation="pytorch-grad-cam").maps)
    phi, _ = liftcam.exact_shapley(s.head, s.body(x), exps["shap-cam"].targets)   # K = 4: 64 samples enumerate
    torch.testing.assert_close(exps["shap-cam"].coefficients, phi, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "shap").glob("*.npz"))) == 3
    with pytest.raises(ValueError, match="unknown method"):
        explaining.explain_all(s, x, ["nope-cam"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="ground_truth"):
        explaining.explain_cached(s, x, "shap-cam", cache_dir=tmp_path)


def test_to_npz_keeps_what_makes_each_map():
    import io

    s, x = tiny_model(), images(2)
    exps = {m: liftcam.explain(s, x, method=m) for m in ("grad-cam", "lift-cam")}
    with np.load(io.BytesIO(explaining.to_npz(exps, ["a", "b"]))) as f:
        assert f["names"].tolist() == ["a", "b"]
        for m, e in exps.items():
            raw = torch.as_tensor(f[f"{m}.raw"])
            maps, _ = core.cam_maps(raw[:, None], torch.ones(2, 1), (8, 8))   # the map from raw alone
            torch.testing.assert_close(maps, e.maps)
            assert f[f"{m}.coefficients"].shape == (2, 4) and f[f"{m}.targets"].tolist() == e.targets.tolist()


def test_the_key_covers_the_forward_code_not_only_the_weights(tmp_path):
    """The same weights with every ReLU replaced by GELU compute other maps: a new key, not a stale hit."""
    s, x = tiny_model(), images(2)
    first = explaining.explain_cached(s, x, "lift-cam", cache_dir=tmp_path)
    net = s._reference
    gelu = nn.Sequential(*[nn.GELU() if isinstance(m, nn.ReLU) else m for m in net])
    other = split(gelu, "1", name="tiny")
    assert liftcam.cache.weights_digest(other) == liftcam.cache.weights_digest(s)
    e = explaining.explain_cached(other, x, "lift-cam", cache_dir=tmp_path)
    assert not e.extras["cached"].any()
    torch.testing.assert_close(e.maps, liftcam.explain(other, x, method="lift-cam").maps)
    assert not torch.allclose(e.coefficients, first.coefficients)


def test_an_edited_payload_or_a_nan_is_recomputed_and_stale_temporary_files_go(tmp_path):
    s, x = tiny_model(), images(1)
    e = explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
    path = e.extras["files"][0]
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(path.with_suffix(""), **{**arrays, "alpha": arrays["alpha"][::-1].copy()})   # edited; key intact
    nan = {"alpha": np.full_like(arrays["alpha"], np.nan)}             # cache.write refuses NaN: written by hand
    np.savez(path.with_name("nan.npz"), **nan, key=arrays["key"], digest=np.array(liftcam.cache._payload_digest(nan)))
    for name in ("reversed", "nan"):
        if name == "nan":                                   # a NaN stored with a valid digest (a run that went wrong)
            path.with_name("nan.npz").replace(path)
        with pytest.warns(UserWarning, match="sha256" if name == "reversed" else "NaN"):
            again = explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
        assert not again.extras["cached"].any()
        torch.testing.assert_close(again.coefficients, e.coefficients)
    stale, fresh = tmp_path / "maps" / ".tmp-old.npz.x", tmp_path / "maps" / ".tmp-new.npz.y"
    stale.write_bytes(b""), fresh.write_bytes(b"")
    os.utime(stale, (0, 0))                                                          # left by a run killed long ago
    explaining.explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
    assert not stale.exists() and fresh.exists()                                     # a live writer's file stays


def test_the_old_module_name_still_works():
    from liftcam import explanations
    assert explanations.explain_all is explaining.explain_all and explanations.cache_folder is explaining.cache_folder
