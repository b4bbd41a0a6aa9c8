"""Triton kernel tests: without a GPU they run on CPU tensors through Triton's interpreter.

``TRITON_INTERPRET=1`` must be in the environment before the kernels are built (on their first
launch; ``fastot._triton`` builds nothing at import). On a CUDA machine the compiled kernels run on
CUDA tensors instead, unless ``TRITON_INTERPRET=1`` was set by the caller.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
