import pytest
import torch
import torch.nn as nn

from convcorr.backbones.alexnet import LocalResponseNorm


@pytest.mark.parametrize("size,beta,k", [(5, 0.75, 1.0), (4, 0.75, 2.0), (3, 0.5, 1.0), (1, 0.75, 1.0)])
def test_lrn_matches_torch(size, beta, k):
    g = torch.Generator().manual_seed(size)
    x = torch.relu(torch.randn(2, 13, 7, 6, generator=g) * 60)  # post-ReLU magnitudes like conv1's
    ref = nn.LocalResponseNorm(size, alpha=1e-4, beta=beta, k=k)(x)
    out = LocalResponseNorm(size, alpha=1e-4, beta=beta, k=k)(x)
    torch.testing.assert_close(out, ref, rtol=2e-6, atol=1e-5)
    x64 = x.double()
    torch.testing.assert_close(LocalResponseNorm(size, 1e-4, beta, k)(x64),
                               nn.LocalResponseNorm(size, 1e-4, beta, k)(x64), rtol=1e-12, atol=1e-12)


def test_lrn_by_hand():
    # one pixel, channels [3, 4, 0]: size 3 window sums of squares [25, 25, 16], alpha 3 -> alpha/size = 1
    x = torch.tensor([3.0, 4.0, 0.0]).view(1, 3, 1, 1)
    out = LocalResponseNorm(3, alpha=3.0, beta=0.5, k=0.0)(x).flatten()
    torch.testing.assert_close(out, torch.tensor([3 / 5, 4 / 5, 0.0]))
    # other ranks use torch's functional LRN
    x3 = torch.rand(2, 5, 4)
    torch.testing.assert_close(LocalResponseNorm(3)(x3), nn.LocalResponseNorm(3)(x3))
