"""Meta-tests for the torch.library ops: the registry covers every fastot op, and every op passes
``torch.library.opcheck`` (schema, autograd registration, fake tensor, AOT dispatch) on its samples."""

from __future__ import annotations

import pytest
import torch

from fastot.ops import OPS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def op_name(op) -> str:
    """``namespace::name`` of an OpOverload, OpOverloadPacket or CustomOpDef, without overload."""
    if isinstance(op, torch._ops.OpOverload):
        return op._schema.name
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op._qualified_op_name
    if hasattr(op, "_qualname"):  # torch._library.custom_ops.CustomOpDef
        return op._qualname
    raise TypeError(f"unrecognised op object in fastot.ops.OPS: {op!r}")


def registered_fastot_ops() -> set[str]:
    names = {name.split(".")[0] for name in torch._C._dispatch_get_all_op_names()}
    return {name for name in names if name.startswith("fastot::")}


def test_registry_non_empty():
    assert len(OPS) > 0
    for entry in OPS:
        assert len(entry) == 2, entry
        op, sample_fn = entry
        assert callable(sample_fn)
        assert op_name(op).startswith("fastot::")


def test_registry_covers_every_registered_op():
    registered = registered_fastot_ops()
    assert registered, "no operators registered under the fastot namespace"
    in_registry = {op_name(op) for op, _ in OPS}
    missing = registered - in_registry
    assert not missing, f"ops registered under torch.ops.fastot but missing from fastot.ops.OPS: {missing}"
    stale = in_registry - registered
    assert not stale, f"ops in fastot.ops.OPS that are not registered: {stale}"
    assert len(in_registry) == len(OPS), "duplicate entries in fastot.ops.OPS"


def test_registry_ops_reachable_via_torch_ops():
    for op, _ in OPS:
        ns, name = op_name(op).split("::")
        assert ns == "fastot"
        assert hasattr(torch.ops.fastot, name)


def _samples(sample_fn, device):
    samples = list(sample_fn(device=device))
    assert samples, f"{sample_fn.__name__} returned no samples"
    for args, kwargs in samples:
        assert isinstance(args, tuple) and isinstance(kwargs, dict)
    return samples


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("op", "sample_fn"), OPS, ids=[op_name(op) for op, _ in OPS])
def test_samples_cover_the_op(op, sample_fn, device):
    """Samples exercise batch dims, both orientations, maximize, and several dtypes."""
    samples = _samples(sample_fn, device)
    costs = [args[0] for args, _ in samples]
    assert all(c.device.type == torch.device(device).type for c in costs)
    assert any(c.dim() > 2 for c in costs), "no batched sample"
    assert any(c.shape[-2] > c.shape[-1] for c in costs), "no tall (n > m) sample"
    assert any(c.shape[-2] < c.shape[-1] for c in costs), "no wide (n < m) sample"
    assert len({c.dtype for c in costs}) >= 2, "samples use a single dtype"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("op", "sample_fn"), OPS, ids=[op_name(op) for op, _ in OPS])
def test_opcheck(op, sample_fn, device):
    for args, kwargs in _samples(sample_fn, device):
        torch.library.opcheck(op, args, kwargs)
