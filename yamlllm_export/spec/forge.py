"""ReaLLM-Forge's attention softmax variants as spec data: which options each variant reads and Forge's
default for each (its ``train_args.py`` CLI defaults, which its checkpoints store). ``rules.py`` refuses an
option a variant does not read; ``load._derive`` fills the unset ones from here.
"""

from __future__ import annotations

import math
from typing import Any

_CONSMAX = {"base": math.e, "beta_init": 2.5, "gamma_init": 100.0}
_POLY = {"x_intercept": -100.0, "y_intercept": 1.0, "power": 2.0, "divisor": 1000.0}

# variant -> {option: Forge's default}; None: the option is read but has no value unless set (clamp, guess)
SOFTMAX_OPTIONS: dict[str, dict[str, Any]] = {
    "softermax": {"use_xmax": True},
    "consmax": _CONSMAX,
    "consmax_v2": {**_CONSMAX, "clamp": None},
    "consmax_quan": {"beta_init": 2.5, "gamma_init": 100.0},
    "saturatingconsmax": {**_CONSMAX, "saturation": 11.0},
    "polymax": _POLY,
    "vpolymax": _POLY,
    "exppolymax": {"y_intercept": 1.0, "power": 2.0, "divisor": 1000.0},
    "strongermax": {
        "base": math.e,
        "use_xmax": True,
        "xmax_guess": None,
        "div_by_sum": True,
        "divisor": 1.0,
        "clamp": None,
        "obo": 0.0,
        "obo_per_head": False,
        "temperature": 1.0,
    },  # fmt: skip
    "sigsoftmax": {},
    "relumax": {"divisor": 256.0},
    "relu2max": {"divisor": 256.0},
    "sigmoidmax": {"divisor": 256.0},
    "softplus": {"divisor": 100.0},
    "pfla_softmax": {
        "num_knots": 30,
        "x_min": -10.0,
        "x_max": 10.0,
        "density": "linear",
        "mode": "linear",
        "init_activation": "gelu",
        "learned_divisor": False,
        "learned_divisor_init": 1.0,
    },  # fmt: skip
}
# keys of the softmax object that are not per-variant options
SOFTMAX_COMMON = ("type", "div_by_seq_len")
