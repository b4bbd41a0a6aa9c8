"""Drop-in replacements for the couplers of other projects, backed by fastot.

- :mod:`fastot.compat.torchcfm`: ``OTPlanSampler`` (torchcfm's constructor and methods).
- :mod:`fastot.compat.c2ot`: ``OTConditionalPlanSampler`` (the C²OT reference code's constructor).

Neither imports the project it replaces.
"""

from __future__ import annotations

__all__ = ["c2ot", "torchcfm"]
