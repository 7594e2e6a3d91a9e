"""liftcam.compat: LIFT-CAM and every method with pytorch-grad-cam's interface."""
import numpy as np
import pytest
import torch

import liftcam
from liftcam import models
from liftcam.compat import LiftCAM, cam_class
from liftcam.targets import ReST
from test_targets import tiny

IMAGENET = (models.IMAGENET_MEAN, models.IMAGENET_STD)


def test_pytorch_grad_cams_readme_example_with_liftcam(resnet50_net):
    import skimage.data
    from PIL import Image
    from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    rgb_img = np.float32(Image.fromarray(skimage.data.chelsea()).resize((224, 224))) / 255
    before = {k: v.clone() for k, v in resnet50_net.state_dict().items()}
    resnet50_net.train()                                             # pytorch-grad-cam would switch it to eval
    try:
        # pytorch-grad-cam's README, with GradCAM swapped for LiftCAM (random weights: no download here)
        model = resnet50_net
        target_layers = [model.layer4[-1]]
        input_tensor = preprocess_image(rgb_img, mean=IMAGENET[0], std=IMAGENET[1])
        targets = [ClassifierOutputTarget(281)]
        with LiftCAM(model=model, target_layers=target_layers) as cam:
            grayscale_cam = cam(input_tensor=input_tensor, targets=targets)
            grayscale_cam = grayscale_cam[0, :]
            visualization = show_cam_on_image(rgb_img, grayscale_cam, use_rgb=True)
            model_outputs = cam.outputs
        assert model.training and all(m.training for m in model.modules())   # the caller's flags are left alone
    finally:
        resnet50_net.eval()
    assert grayscale_cam.dtype == np.float32 and grayscale_cam.shape == (224, 224)
    assert visualization.shape == (224, 224, 3) and visualization.dtype == np.uint8
    # the same maps as liftcam.explain on the pixel-space image, the layer found by its name
    s = models.split(model, "layer4.2", normalize=IMAGENET)
    ref = liftcam.explain(s, torch.from_numpy(rgb_img).permute(2, 0, 1)[None], "lift-cam", targets=281)
    assert np.abs(grayscale_cam - ref.maps[0].numpy()).max() <= 1e-4
    assert 0 <= grayscale_cam.min() and grayscale_cam.max() == 1
    with torch.no_grad():
        torch.testing.assert_close(model_outputs, model(input_tensor), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # the caller's weights too


def test_every_method_has_a_class_equal_to_explain():
    net = tiny()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    s = models.split(net, "3")
    for name in liftcam.METHODS:
        if name == "cam":
            continue                                                 # needs a GAP head: below
        options = {"nsamples": 64} if name == "shap-cam" else {}
        with cam_class(name)(net, target_layers=[net[3]], **options) as cam:
            got = cam(input_tensor=x, targets=None)
        want = liftcam.explain(s, x, name, **options).maps.numpy()
        assert got.shape == (2, 16, 16) and np.abs(got - want).max() <= 1e-5, name
    gap = tiny(gap=True)
    got = cam_class("cam")(gap, target_layers=[gap[3]])(input_tensor=x, targets=[1, 2])
    assert np.abs(got - liftcam.explain(models.split(gap, "3"), x, "cam", targets=[1, 2]).maps.numpy()).max() <= 1e-5
    assert cam_class("lift-cam") is LiftCAM and cam_class("grad-cam++").__name__ == "GradCAMPlusPlus"


def test_targets_and_layers_as_pytorch_grad_cam_users_pass_them():
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputSoftmaxTarget

    from liftcam.core import explain_targets

    net = tiny()
    x = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) - 0.5) * 4   # not in [0, 1]: as given
    s = models.split(net, "3")
    with torch.no_grad():
        A = s.body(x)
    grad = cam_class("grad-cam")(net, target_layers=[net[3]])
    got = grad(input_tensor=x, targets=[ClassifierOutputReST(1), ClassifierOutputSoftmaxTarget(2)])
    want = explain_targets(s, x, A, s.head(A), [ReST(1), lambda y: y.softmax(0)[2]], "grad-cam").maps.numpy()
    assert np.abs(got - want).max() <= 1e-5
    with pytest.raises(ValueError, match="linear in the logits"):
        LiftCAM(net, target_layers=[net[3]])(input_tensor=x, targets=[ClassifierOutputReST(1)] * 2)
    with pytest.raises(ValueError, match="one target per image"):
        LiftCAM(net, target_layers=[net[3]])(input_tensor=x, targets=[ClassifierOutputReST(1)])
    with pytest.raises(ValueError, match="not a submodule"):
        LiftCAM(net, target_layers=[torch.nn.ReLU()])
    # several layers: the mean of their maps, min-maxed (pytorch-grad-cam's aggregation)
    two = LiftCAM(net, target_layers=[net[3], "1"])(input_tensor=x, targets=[0, 0])
    m = [LiftCAM(net, target_layers=[layer])(input_tensor=x, targets=[0, 0]) for layer in (net[3], net[1])]
    mean = (m[0] + m[1]) / 2
    lo, hi = mean.min((1, 2), keepdims=True), mean.max((1, 2), keepdims=True)
    assert np.abs(two - (mean - lo) / (hi - lo)).max() <= 1e-6
