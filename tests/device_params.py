"""The devices a test runs on: the CPU always, a GPU where this machine has one."""

import pytest
import torch

DEVICES = ["cpu",
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA GPU on this machine")),
           pytest.param("mps", marks=pytest.mark.skipif(
               not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
               reason="no Apple GPU (MPS) on this machine"))]
