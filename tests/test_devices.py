"""Device follows the model: every method gives the CPU's answer on CUDA (runs where CUDA is present)."""
import pytest
import torch
from torch import nn

import liftcam
from conftest import noise
from liftcam import models

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
METHODS = [m for m in liftcam.METHODS if m != "cam"]        # CAM needs a GAP + linear head; this one is not


def tiny():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU6(),
                        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).eval()
    return models.split(net, "2")


@CUDA
@pytest.mark.parametrize("method", METHODS)
def test_cuda_equals_cpu(method):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    s_cpu, x = tiny(), noise(3, 16)
    s_gpu = tiny().to("cuda")
    opts = {"nsamples": 64} if method == "shap-cam" else {}
    cpu = liftcam.explain(s_cpu, x, method=method, **opts)
    gpu = liftcam.explain(s_gpu, x, method=method, **opts)           # images on the CPU: moved to the model
    assert gpu.maps.device.type == "cuda" and gpu.coefficients.device.type == "cuda"
    assert torch.equal(gpu.targets.cpu(), cpu.targets)
    scale = cpu.coefficients.abs().max().item()
    assert torch.allclose(gpu.coefficients.cpu(), cpu.coefficients, rtol=1e-4, atol=1e-5 * scale)


def test_device_spec():
    assert liftcam.models.device("cpu") == torch.device("cpu")
    assert liftcam.models.device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
