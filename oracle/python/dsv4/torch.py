"""A PyTorch recorder writing a dsv4 candidate dump (oracle/README.md §Dump convention).

    import dsv4, dsv4.torch
    golden = dsv4.Golden("g.h5")
    rec = dsv4.torch.Recorder(model, golden=golden)   # hooks on the official module names
    model(tokens[:, :prompt], start_pos=0)            # step "prefill"
    model(tokens[:, prompt:prompt + 1], start_pos=prompt)   # step "decode0", ...
    rec.save("cand.npz", golden=golden)
    assert dsv4.certify(golden, "cand.npz").passed

**What is hooked.** Forward hooks on the model's submodules, named by their path in the module
tree (``layers.3.attn``, ``layers.3.ffn.gate``, ``head``, ...): with ``name_map``, the modules it
names; otherwise the modules whose path is a module of the golden (``golden=``), of ``modules=``,
or — with neither — of `dsv4 outputs --config tiny` (the C++ output table; needs the binary).
A module's output is recorded as ``<step>/<module>/out``; a tuple's elements as ``out0``, ``out1``, ...
(the gate's weights and expert ids); ``None`` elements and outputs are skipped.

**Values that are not module outputs** — the mHC intermediates ``hc_attn/y|post|comb``, the
attention's ``kv``, a gate's scores, ``mtp.0/in`` — are recorded from inside a forward:
``dsv4.torch.record("hc_attn/post", post, module=self)`` (relative to the module's official path:
``layers.3.hc_attn/post`` when self is ``layers.3``), or ``record("layers.3.hc_attn/post", post)``.
``record`` feeds every attached recorder and does nothing when none is attached.

**Steps.** By default every call of the root module starts a step: the first ``prefill``, then
``decode0``, ``decode1``, ...; ``with rec.step("decode0"):`` sets it explicitly (for engines whose
forward is not the root module's). A name recorded twice in a step is an error.

**Values.** Tensors are detached and copied to the CPU when recorded, in their own dtype: bfloat16
as raw bits (torch 1.13 has no uint16: the bits go through an int16 view), float16/32/64 as such,
integers as int64. ``save`` reshapes each tensor to the golden's shape when given one (the official
model's [b, s, hc, d] block outputs and [b*s, k] gate outputs become the golden's [b, s, c]),
otherwise flattens dimensions after the second ([b, s, ...] -> [b, s, c]).
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .dump import BF16, Array, write_dump

_active: List["Recorder"] = []


def record(name: str, tensor, module: Optional[torch.nn.Module] = None) -> None:
    """Record ``tensor`` under ``name`` in every attached recorder (see the module docstring)."""
    for r in list(_active):
        r.record(name, tensor, module=module)


def to_numpy(t) -> Array:
    """A tensor (or array) as a numpy array, bfloat16 as :class:`BF16` bits."""
    if isinstance(t, BF16):
        return t
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return BF16(t.view(torch.int16).numpy().view(np.uint16).copy())
    if t.dtype in (torch.float16, torch.float32, torch.float64):
        return t.numpy().copy()
    if t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return t.to(torch.int64).numpy().copy()
    raise TypeError(f"cannot record a tensor of dtype {t.dtype}")


_STEP = re.compile(r"^(prefill|decode\d+)$")
Target = Union[None, str, Sequence[Optional[str]]]


def _official_modules() -> set:
    from .cli import outputs

    return {o["module"] for o in outputs("tiny", 4, 2)}


def _generalise(path: str) -> str:
    return re.sub(r"^(layers|mtp)\.\d+", r"\1.N", path)


class Recorder:
    """Records a torch model's module outputs under dsv4's canonical names (module docstring)."""

    def __init__(self, model: torch.nn.Module, name_map: Union[None, Mapping[str, Target], Callable[[str], Target]] = None,
                 *, golden=None, modules: Optional[Iterable[str]] = None, auto_steps: bool = True):
        self.model = model
        self.tensors: "OrderedDict[str, Array]" = OrderedDict()
        self._paths: Dict[int, str] = {}  # id(module) -> official module path
        self._handles = []
        self._step: Optional[str] = None
        self._explicit = 0
        self._calls = 0
        self.auto_steps = auto_steps
        named = dict(model.named_modules())
        targets: Dict[str, Target] = {}
        if name_map is not None:
            if callable(name_map):
                targets = {n: name_map(n) for n in named}
            else:
                missing = [k for k in name_map if k not in named]
                if missing:
                    raise KeyError(f"name_map names modules the model does not have: {missing[:5]}")
                targets = dict(name_map)
        else:
            if modules is not None:
                known = set(modules)
            elif golden is not None:
                known = set(golden.modules)
            else:
                known = None
            if known is not None:
                targets = {n: n for n in named if n and n in known}
            else:
                known_general = {_generalise(m) for m in _official_modules()}
                targets = {n: n for n in named if n and _generalise(n) in known_general}
        for n, target in targets.items():
            if target is None:
                continue
            mod = named[n]
            if isinstance(target, str) and "/" not in target:
                self._paths[id(mod)] = target
            self._handles.append(mod.register_forward_hook(self._hook(target)))
        # official paths of the other modules too, for record(..., module=m)
        for n, mod in named.items():
            if n and id(mod) not in self._paths and name_map is None:
                self._paths[id(mod)] = n
        self._handles.append(model.register_forward_pre_hook(self._root_pre_hook))
        _active.append(self)

    # ---- steps ----
    @property
    def current_step(self) -> Optional[str]:
        return self._step

    @contextlib.contextmanager
    def step(self, name: str):
        """Record under step ``name`` (``prefill`` or ``decode<i>``) inside the block."""
        if not _STEP.match(name):
            raise ValueError(f"step must be 'prefill' or 'decode<i>', not {name!r}")
        prev = self._step
        self._step, self._explicit = name, self._explicit + 1
        try:
            yield self
        finally:
            self._step, self._explicit = prev, self._explicit - 1

    def _root_pre_hook(self, module, inputs):
        if not self.auto_steps or self._explicit:
            return
        self._step = "prefill" if self._calls == 0 else f"decode{self._calls - 1}"
        self._calls += 1

    # ---- recording ----
    def _hook(self, target: Target):
        def hook(module, inputs, output):
            if isinstance(target, str) and "/" in target:
                self.record(target, output)
            elif isinstance(output, (tuple, list)):
                names = (list(target) if not isinstance(target, str)
                         else [f"{target}/out{i}" for i in range(len(output))])
                if len(names) != len(output):
                    raise ValueError(f"{module.__class__.__name__} returned {len(output)} values, the map names "
                                     f"{len(names)}: {names}")
                for n, t in zip(names, output):
                    if n is not None and t is not None:
                        self.record(n, t)
            elif output is not None:
                if not isinstance(target, str):
                    raise ValueError(f"the map gives {list(target)} for a module returning one tensor")
                self.record(target + "/out", output)

        return hook

    def record(self, name: str, tensor, module: Optional[torch.nn.Module] = None) -> None:
        """Record one tensor. ``name``: ``<module>/<output>`` in the current step, a full
        ``<step>/<module>/<output>``, or — with ``module`` — relative to that module's official path
        (``"hc_attn/post"`` on ``layers.3`` -> ``layers.3.hc_attn/post``; ``"kv"`` on
        ``layers.3.attn`` -> ``layers.3.attn/kv``)."""
        if module is not None:
            base = self._paths.get(id(module))
            if base is None:
                raise KeyError(f"record({name!r}): the module {module.__class__.__name__} is not part of the "
                               f"recorded model")
            if "/" in name:
                sub, out = name.split("/", 1)
                name = f"{base}.{sub}/{out}" if sub else f"{base}/{out}"
            else:
                name = f"{base}/{name}"
        parts = name.split("/")
        if len(parts) == 2:
            if self._step is None:
                raise RuntimeError(f"record({name!r}) outside a step: call the model (auto steps) or use "
                                   f"`with rec.step(...)`")
            name = f"{self._step}/{name}"
        elif len(parts) != 3 or not _STEP.match(parts[0]):
            raise ValueError(f"not a canonical name <step>/<module>/<output>: {name!r}")
        if name in self.tensors:
            raise ValueError(f"{name} recorded twice")
        self.tensors[name] = to_numpy(tensor)

    # ---- results ----
    @property
    def names(self) -> List[str]:
        return list(self.tensors)

    def arrays(self, golden=None) -> "OrderedDict[str, Array]":
        """The recorded tensors in dsv4's shapes: the golden's where given, else [b, s, c]."""
        out: "OrderedDict[str, Array]" = OrderedDict()
        for n, a in self.tensors.items():
            if golden is not None and n in golden:
                shape = golden.shape(n)
                if int(np.prod(shape)) != a.size:
                    raise ValueError(f"{n}: {a.size} elements recorded (shape {tuple(a.shape)}), the golden's "
                                     f"shape is {shape}")
                out[n] = a.reshape(shape)
            elif len(a.shape) > 3:
                out[n] = a.reshape(a.shape[0], a.shape[1], -1)
            else:
                out[n] = a
        return out

    def unmatched(self, golden) -> List[str]:
        """Recorded names the golden does not hold (certify lists them as unmatched)."""
        return [n for n in self.tensors if n not in golden]

    def save(self, path, golden=None, format: Optional[str] = None) -> str:
        """Write the dump (.npz, .h5, .safetensors or a directory: dsv4.dump.write_dump)."""
        return write_dump(path, self.arrays(golden), format=format)

    def clear(self) -> None:
        self.tensors.clear()
        self._calls = 0
        self._step = None

    def remove(self) -> None:
        """Detach every hook; later record() calls no longer reach this recorder."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self in _active:
            _active.remove(self)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
