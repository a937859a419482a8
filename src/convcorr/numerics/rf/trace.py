"""Receptive-field geometry by tracing the actual computation (every aten op of one forward pass).

Each activation element carries, alongside its value, the interval of input x (and y) coordinates it depends on.
The intervals are propagated through every operation the network really executes (intercepted with a
``TorchDispatchMode``), so residual shortcuts, concatenations, permutes, token reshapes and attention are followed
along the data flow, not in module-registration order:

* window ops (convolution, max / average pooling, any dimension, dilation, groups, asymmetric or ``F.pad``
  padding): the interval of an output element is the hull of the intervals in its window; padded positions get
  coordinates extrapolated from the grid (the usual "virtual" receptive field that ignores image borders);
* pointwise ops (``add``, ``mul``, activations, eval-mode batch norm, ...): union over the broadcast operands;
* layout ops (view, permute, transpose, cat, slice, split, ...): the same op applied to the interval tensors;
* mixing ops (reductions, softmax, layer / group norm, matrix products, attention, cumsum): hull over the mixed
  elements; when the mixed elements sit at different input positions the result is marked "mixed", and such a
  layer reports a GLOBAL receptive field, with the stride / offset of the positions ("anchors") its tokens
  stay attached to (for a ViT: the patch grid, stride p, offset (p - 1) / 2);
* anything else that touches a traced tensor (upsampling, sorting, scatter, ...) raises :class:`GeometryError`.

The geometry is read off the traced intervals of a layer's (N, C, h, w) output: size = interval length (equal
for every column), stride and offset from the column centres (exactly affine, checked), x and y equal.
Intervals are float32, exact for the integer and half-integer coordinates involved (below 2**23).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from ...core.geometry import RFGeometry

aten = torch.ops.aten
INF = math.inf
LO = ("lx", "ly", "ax", "ay")  # interval lower bounds (x, y) and anchor lower bounds
HI = ("hx", "hy", "bx", "by")  # interval upper bounds and anchor upper bounds
KEYS = LO + HI + ("m",)  # m: 1 where positions were mixed by a non-window op
_FILL = {**{k: INF for k in LO}, **{k: -INF for k in HI}, "m": 0.0}
_ANCHOR = ("ax", "ay", "bx", "by")


# elementwise ops that torch does not tag "pointwise"
_EXTRA_POINTWISE = {getattr(getattr(aten, n), "default") for n in
                    ("hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_", "silu", "silu_",
                     "relu6", "elu", "elu_", "leaky_relu", "leaky_relu_", "softplus", "gelu_")
                    if hasattr(aten, n) and hasattr(getattr(aten, n), "default")}


class GeometryError(ValueError):
    """The receptive-field analysis cannot follow this architecture (or this layer); no number is given."""


def _bind(func, args, kwargs) -> dict:
    """Arguments of an aten op by schema name, defaults filled in."""
    out = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args):
            out[a.name] = args[i]
        elif a.name in (kwargs or {}):
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _red(k):
    return torch.amin if k in LO else torch.amax


def _combine(k, a, b):
    return torch.minimum(a, b) if k in LO else torch.maximum(a, b)


def _extend(t: torch.Tensor, dim: int, pl: int, pr: int, fill: float, extrapolate: bool = True) -> torch.Tensor:
    """Pad (or crop, for negative amounts) ``t`` along ``dim``; padded values continue the grid linearly
    (from the two outermost values) where those are finite, else ``fill``."""
    L = t.shape[dim]
    if pl < 0:
        t, L, pl = t.narrow(dim, -pl, L + pl), L + pl, 0
    if pr < 0:
        t, L, pr = t.narrow(dim, 0, L + pr), L + pr, 0
    parts = []
    shape = [1] * t.ndim
    if pl > 0:
        k = torch.arange(pl, 0, -1, dtype=t.dtype, device=t.device)
        shape[dim] = pl
        if extrapolate and L >= 2:
            first, second = t.narrow(dim, 0, 1), t.narrow(dim, 1, 1)
            v = first - k.view(shape) * (second - first)
            v = torch.where(torch.isfinite(v), v, torch.full_like(v, fill))
        else:
            v = torch.full_like(t.narrow(dim, 0, 1).expand(*[pl if d == dim else -1 for d in range(t.ndim)]), fill)
        parts.append(v)
    parts.append(t)
    if pr > 0:
        k = torch.arange(1, pr + 1, dtype=t.dtype, device=t.device)
        shape[dim] = pr
        if extrapolate and L >= 2:
            last, prev = t.narrow(dim, L - 1, 1), t.narrow(dim, L - 2, 1)
            v = last + k.view(shape) * (last - prev)
            v = torch.where(torch.isfinite(v), v, torch.full_like(v, fill))
        else:
            v = torch.full_like(t.narrow(dim, 0, 1).expand(*[pr if d == dim else -1 for d in range(t.ndim)]), fill)
        parts.append(v)
    return torch.cat(parts, dim) if len(parts) > 1 else t


_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _window(t: torch.Tensor, k: str, kernel, stride, padding, dilation, out_sizes) -> torch.Tensor:
    """Hull (min for lower, max for upper bounds) over each window of the last len(kernel) dims of ``t``
    (N, C, *S), with padding by extrapolation; output spatial sizes ``out_sizes`` come from the real op."""
    d = len(kernel)
    fill = _FILL[k]
    for i in range(d):
        dim = t.ndim - d + i
        need = (out_sizes[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
        t = _extend(t, dim, padding[i], need - t.shape[dim] - padding[i], fill, extrapolate=k != "m")
    lead = t.shape[:-d]
    x = t.reshape(-1, 1, *t.shape[-d:])
    sign = -1.0 if k in LO else 1.0
    if d not in _MAXPOOL:
        raise GeometryError(f"{d}-d window op")
    y = sign * _MAXPOOL[d](sign * x, list(kernel), list(stride), 0, list(dilation))
    return y.reshape(*lead, *y.shape[-d:])


def _ntuple(v, d):
    if isinstance(v, int):
        return [v] * d
    v = list(v)
    return v * d if len(v) == 1 else v


def _spread(states: list[dict], dims_list: list) -> torch.Tensor | None:
    """1 where the (finite) interval centres reduced over ``dims`` differ, per axis; combined over the states
    (each reduced with keepdim over its dims and broadcast together)."""
    flags = None
    for ax in ("x", "y"):
        cmin = cmax = None
        for s, dims in zip(states, dims_list):
            c = (s["l" + ax] + s["h" + ax]) / 2  # nan where untracked (inf - inf)
            lo = torch.nan_to_num(c, nan=INF, posinf=INF, neginf=INF)
            hi = torch.nan_to_num(c, nan=-INF, posinf=-INF, neginf=-INF)
            dims = [d for d in (dims or []) if c.shape[d] > 1]
            if dims:
                lo, hi = torch.amin(lo, dims, keepdim=True), torch.amax(hi, dims, keepdim=True)
            cmin = lo if cmin is None else torch.minimum(cmin, lo)
            cmax = hi if cmax is None else torch.maximum(cmax, hi)
        f = ((cmax > cmin) & torch.isfinite(cmax) & torch.isfinite(cmin)).to(cmin.dtype)
        flags = f if flags is None else torch.maximum(flags, f)
    return flags


def _reduce(s: dict, dims, keepdim: bool) -> dict:
    """Hull over ``dims``; marks mixing when the reduced elements sit at different positions."""
    dims = list(range(s["lx"].ndim)) if dims is None or len(dims) == 0 else [d % s["lx"].ndim for d in dims]
    out = {k: _red(k)(s[k], dims, keepdim=True) for k in KEYS}
    out["m"] = torch.maximum(out["m"], _spread([s], [dims]))
    if not keepdim:
        out = {k: v.squeeze(dims) if dims else v for k, v in out.items()}
    return out


class _Tracer(TorchDispatchMode):
    """Propagates coordinate intervals alongside the real computation (see the module docstring)."""

    LAYOUT = {
        aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.permute.default,
        aten.transpose.int, aten.t.default, aten.expand.default, aten.slice.Tensor, aten.select.int,
        aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.cat.default,
        aten.stack.default, aten.clone.default, aten.split.Tensor, aten.split_with_sizes.default,
        aten.unbind.int, aten.alias.default, aten.detach.default, aten.lift_fresh.default, aten.repeat.default,
        aten.index_select.default, aten.index.Tensor, aten.gather.default, aten.flip.default, aten.roll.default,
        aten.narrow.default, aten.pixel_shuffle.default, aten.pixel_unshuffle.default, aten._to_copy.default,
    }
    SHAPELESS = {aten.unsqueeze.default, aten.permute.default, aten.transpose.int, aten.t.default,
                 aten.alias.default, aten.detach.default, aten.clone.default, aten.lift_fresh.default,
                 aten.expand.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default}
    CONST = {aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default, aten.full_like.default,
             aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default, aten.new_full.default,
             aten._local_scalar_dense.default, aten.sym_size.int, aten.argmax.default, aten.eq.Scalar,
             aten.ne.Scalar, aten.is_nonzero.default}

    def __init__(self):
        super().__init__()
        self.states = WeakIdKeyDictionary()

    # -- helpers ------------------------------------------------------------------------------------------
    def st(self, t):
        return self.states.get(t) if isinstance(t, torch.Tensor) else None

    def set(self, t, s):
        if isinstance(t, torch.Tensor):
            if s is None:
                self.states.pop(t, None)
            else:
                self.states[t] = s

    def tracked(self, obj) -> bool:
        if isinstance(obj, torch.Tensor):
            return obj in self.states
        if isinstance(obj, (list, tuple)):
            return any(self.tracked(o) for o in obj)
        if isinstance(obj, dict):
            return any(self.tracked(o) for o in obj.values())
        return False

    def _map(self, obj, k):
        """Replace tensors by their state component ``k`` (untracked float tensors by the fill)."""
        if isinstance(obj, torch.Tensor):
            s = self.st(obj)
            if s is not None:
                return s[k].expand(obj.shape)
            if obj.is_floating_point():
                return torch.full(obj.shape, _FILL[k], dtype=torch.float32, device=obj.device)
            return obj
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._map(o, k) for o in obj)
        return obj

    def _assign(self, out, per_key: dict):
        """Store per-key results (tensor or list of tensors, structured like ``out``)."""
        if isinstance(out, torch.Tensor):
            self.set(out, {k: v.expand(out.shape) if v.shape != out.shape else v for k, v in per_key.items()})
        else:
            for i, o in enumerate(out):
                self._assign(o, {k: v[i] for k, v in per_key.items()})

    def pointwise_state(self, tensors, shape) -> dict | None:
        ss = [(self.st(t), tuple(t.shape)) for t in tensors if isinstance(t, torch.Tensor) and self.st(t) is not None]
        if not ss:
            return None
        full = [s for s, sh in ss if sh == tuple(shape)] or [s for s, _ in ss]
        nd = len(shape)
        out = {}
        for k in KEYS:
            src = full if k in _ANCHOR else [s for s, _ in ss]
            v = None
            for s in src:
                x = s[k]
                x = x.reshape((1,) * (nd - x.ndim) + tuple(x.shape))  # compact, broadcastable to ``shape``
                v = x if v is None else _combine(k, v, x)
            out[k] = v
        return out

    # -- dispatch -----------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not (self.tracked(args) or self.tracked(kwargs)):
            return out
        try:
            self.rule(func, args, kwargs, out)
        except GeometryError:
            raise
        except Exception as exc:  # a rule that fails on an unexpected argument form: refuse, never guess
            raise GeometryError(f"receptive-field analysis failed at {func}: {exc}") from exc
        return out

    def rule(self, func, args, kwargs, out):
        tags = getattr(func, "tags", ())
        b = None
        if func in self.CONST:
            self._assign_none(out)
            return
        if func in (aten.fill_.Scalar, aten.fill_.Tensor, aten.zero_.default):
            self.set(args[0], None)
            return
        if func is aten.copy_.default:
            s = self.st(args[1])
            self.set(args[0], None if s is None else {k: v.expand(args[0].shape).clone() for k, v in s.items()})
            return
        if func is aten.as_strided_.default:
            if list(args[1]) != list(args[0].shape):
                raise GeometryError(f"cannot follow {func} changing the shape")
            return
        if func in self.SHAPELESS:  # layout ops that apply to a compact (broadcastable) state as they are
            s = self.st(args[0])
            if func is aten.expand.default:
                per = {k: v.expand(out.shape) for k, v in s.items()}
            elif func in (aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default):
                gone = [d for d in range(args[0].ndim) if args[0].shape[d] == 1]
                if func is not aten.squeeze.default:
                    dims = [args[1]] if isinstance(args[1], int) else list(args[1])
                    gone = [d for d in gone if d in [x % max(args[0].ndim, 1) for x in dims]]
                per = {k: v.squeeze(gone) if gone else v for k, v in s.items()}
            else:
                per = {k: func(v, *args[1:], **kwargs) for k, v in s.items()}
            self.set(out, per)
            return
        if func in self.LAYOUT:
            if func in (aten.view.default, aten._unsafe_view.default):
                f = lambda t, *a: aten.reshape.default(t, *a)
            elif func is aten._to_copy.default:
                f = lambda t, *a, **kw: t.clone()
            else:
                f = func
            per = {k: f(*self._map(list(args), k), **{n: v for n, v in kwargs.items()
                                                      if func is not aten._to_copy.default}) for k in KEYS}
            self._assign(out, per)
            return
        if torch.Tag.inplace in tags and torch.Tag.pointwise not in tags:  # e.g. hardswish_: as its pure form
            pure = getattr(aten, func._schema.name.split("::")[-1].rstrip("_"), None)
            if pure is not None and torch.Tag.pointwise in getattr(getattr(pure, "default", None), "tags", ()):
                tags = tuple(tags) + (torch.Tag.pointwise,)
        if func in _EXTRA_POINTWISE:
            tags = tuple(tags) + (torch.Tag.pointwise,)
        if torch.Tag.pointwise in tags or func in (aten.native_batch_norm.default,
                                                   aten._native_batch_norm_legit_no_training.default,
                                                   aten.native_dropout.default, aten.masked_fill.Scalar,
                                                   aten.masked_fill.Tensor):
            if func is aten.native_batch_norm.default and _bind(func, args, kwargs)["training"]:
                raise GeometryError("batch norm in training mode mixes positions: call .eval() first")
            res = out[0] if isinstance(out, (tuple, list)) else out
            inputs = [args[0]] if func in (aten.native_batch_norm.default,
                                           aten._native_batch_norm_legit_no_training.default) else \
                [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
            s = self.pointwise_state(inputs, res.shape)
            if torch.Tag.inplace in tags or func._schema.name.endswith("_"):
                self.set(args[0], s)
            else:
                self.set(res, s)
            return
        if func is aten.convolution.default:
            b = _bind(func, args, kwargs)
            if b["transposed"]:
                raise GeometryError("cannot follow transposed convolutions (upsampling)")
            x, w = b["input"], b["weight"]
            if self.st(w) is not None:
                raise GeometryError("convolution with input-dependent weights")
            s, d = self.st(x), w.ndim - 2
            G, cout = int(b["groups"]), w.shape[0]
            nb = x.ndim - d - 1  # 1 for batched, 0 for unbatched
            per = {}
            for k in KEYS:
                t = s[k]
                t = t.expand(*t.shape[:-d], *x.shape[-d:])  # spatial dims real, channel dim may stay compact
                args_w = (list(w.shape[2:]), _ntuple(b["stride"], d), _ntuple(b["padding"], d),
                          _ntuple(b["dilation"], d), list(out.shape[-d:]))
                if t.shape[nb] == 1:  # every input channel shares the intervals: output compact too
                    per[k] = _window(t, k, *args_w)
                    continue
                t = t.reshape(*t.shape[:nb], G, t.shape[nb] // G, *t.shape[nb + 1:])
                t = _red(k)(t, nb + 1)
                t = _window(t, k, *args_w)
                if G > 1 and bool(torch.all(t == t.narrow(nb, 0, 1))):  # groups alike: stay compact
                    t = t.narrow(nb, 0, 1)
                per[k] = t if t.shape[nb] == 1 else t.repeat_interleave(cout // G, dim=nb)
            self.set(out, per)
            return
        pools = {aten.max_pool2d_with_indices.default: 2, aten.max_pool3d_with_indices.default: 3,
                 aten.avg_pool2d.default: 2, aten.avg_pool3d.default: 3, aten.max_pool2d.default: 2,
                 aten.avg_pool1d.default: 1, aten.max_pool1d.default: 1}
        if func in pools:
            b = _bind(func, args, kwargs)
            d = pools[func]
            kern = _ntuple(b["kernel_size"], d)
            stride = _ntuple(b["stride"], d) if b["stride"] not in (None, []) else kern
            dil = _ntuple(b.get("dilation") or 1, d)
            res = out[0] if isinstance(out, (tuple, list)) else out
            s = self.st(b["self"])
            s = {k: v.expand(*v.shape[:-d], *b["self"].shape[-d:]) for k, v in s.items()}
            self.set(res, {k: _window(s[k], k, kern, stride, _ntuple(b["padding"], d), dil, list(res.shape[-d:]))
                           for k in KEYS})
            return
        if func in (aten._adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default):
            x = args[0]
            res = out[0] if isinstance(out, (tuple, list)) else out
            s = self.st(x)
            L, o = list(x.shape[-2:]), list(res.shape[-2:])
            if o == [1, 1]:
                self.set(res, _reduce(s, [-2, -1], keepdim=True))
            elif all(l % oo == 0 for l, oo in zip(L, o)):
                kern = [l // oo for l, oo in zip(L, o)]
                s = {k: v.expand(x.shape) for k, v in s.items()}
                self.set(res, {k: _window(s[k], k, kern, kern, [0, 0], [1, 1], o) for k in KEYS})
            else:
                raise GeometryError(f"adaptive pooling from {L} to {o} has irregular bins")
            return
        reductions = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default,
                      aten.var.correction, aten.std.correction, aten.var_mean.correction, aten.std_mean.correction,
                      aten.linalg_vector_norm.default, aten.max.dim, aten.min.dim, aten.logsumexp.default,
                      aten.mean.default, aten.sum.default}
        if func in reductions:
            b = _bind(func, args, kwargs)
            dims = b.get("dim")
            if isinstance(dims, int):
                dims = [dims]
            keep = bool(b.get("keepdim") or False)
            s = _reduce(self.st(args[0]), dims, keep)
            outs = out if isinstance(out, (tuple, list)) else [out]
            self.set(outs[0], s)
            if func in (aten.var_mean.correction, aten.std_mean.correction):
                self.set(outs[1], s)
            return
        norms = {aten._softmax.default: "dim", aten._log_softmax.default: "dim",
                 aten.native_layer_norm.default: "ln", aten.native_group_norm.default: "gn"}
        if func in norms:
            x = args[0]
            n = x.ndim
            if norms[func] == "dim":
                dims = [args[1] % n]
            elif norms[func] == "ln":
                dims = list(range(n - len(args[1]), n))
            else:
                dims = list(range(1, n))
            s = self.st(x)
            r = _reduce(s, dims, keepdim=True)
            new = {k: (s[k] if k in _ANCHOR else r[k]) for k in KEYS}
            res = out[0] if isinstance(out, (tuple, list)) else out
            self.set(res, new)
            return
        if func in (aten.cumsum.default,):
            dim = args[1] % args[0].ndim
            s = {k: v.expand(args[0].shape) for k, v in self.st(args[0]).items()}
            new = {}
            for k in KEYS:
                f = torch.cummin if k in LO else torch.cummax
                new[k] = s[k] if k in _ANCHOR else f(s[k], dim).values
            new["m"] = torch.maximum(new["m"], self._prefix_spread(s, dim))
            self.set(out, new)
            return
        if func is aten.constant_pad_nd.default:
            x, pad = args[0], list(args[1])
            npd = len(pad) // 2  # expand only the padded (last npd) dims to their real size
            s = {k: v.expand(*v.shape[:x.ndim - npd], *x.shape[x.ndim - npd:]) for k, v in self.st(x).items()}
            new = {}
            for k in KEYS:
                t = s[k]
                for i in range(len(pad) // 2):
                    t = _extend(t, x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1], _FILL[k], extrapolate=k != "m")
                new[k] = t
            self.set(out, new)
            return
        if func in (aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default):
            if func in (aten.addmm.default, aten.baddbmm.default):
                bias, a, m = args[0], args[1], args[2]
            else:
                bias, a, m = None, args[0], args[1]
            self.set(out, self._matmul(a, m, bias, out.shape))
            return
        if func in (aten._scaled_dot_product_flash_attention_for_cpu.default,
                    aten._scaled_dot_product_flash_attention.default,
                    aten._scaled_dot_product_efficient_attention.default,
                    aten._scaled_dot_product_cudnn_attention.default,
                    aten._native_multi_head_attention.default):
            q, kk, v = args[0], args[1], args[2]
            res = out[0]
            self.set(res, self._attention(q, kk, v, res.shape))
            return
        raise GeometryError(f"the receptive-field analysis cannot follow the op {func} (applied to a tensor that "
                            "depends on the image)")

    def _assign_none(self, out):
        for o in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(o, torch.Tensor):
                self.set(o, None)

    def _prefix_spread(self, s, dim):
        flags = None
        for ax in ("x", "y"):
            c = (s["l" + ax] + s["h" + ax]) / 2
            fin = torch.isfinite(c)
            lo = torch.cummin(torch.where(fin, c, torch.full_like(c, INF)), dim).values
            hi = torch.cummax(torch.where(fin, c, torch.full_like(c, -INF)), dim).values
            f = ((hi > lo) & torch.isfinite(hi) & torch.isfinite(lo)).to(c.dtype)
            flags = f if flags is None else torch.maximum(flags, f)
        return flags

    def _matmul(self, a, m, bias, shape):
        """out[..., i, j] depends on a[..., i, :] and m[..., :, j] (computed on the reduced, broadcastable
        shapes; anchors follow a's rows)."""
        sa, sm = self.st(a), self.st(m)
        parts, states, dims = [], [], []
        if sa is not None:
            parts.append({k: _red(k)(sa[k], -1, keepdim=True) for k in KEYS})
            states.append(sa)
            dims.append([a.ndim - 1])
        if sm is not None:
            parts.append({k: _red(k)(sm[k], -2, keepdim=True) for k in KEYS})
            states.append(sm)
            dims.append([m.ndim - 2])
        out = {}
        for k in KEYS:
            src = parts[:1] if k in _ANCHOR else parts
            v = src[0][k]
            for p in src[1:]:
                v = _combine(k, v, p[k])
            out[k] = v
        out["m"] = torch.maximum(out["m"], _spread(states, dims))
        if bias is not None and self.st(bias) is not None:
            sb = self.st(bias)
            out = {k: _combine(k, out[k], sb[k]) for k in KEYS}
        return out

    def _attention(self, q, k_, v, shape):
        """out[..., i, :] depends on q[..., i, :] and on every key / value (the last two dims)."""
        parts = []
        sq = self.st(q)
        qrow = None
        if sq is not None:
            qrow = {k: _red(k)(sq[k], -1, keepdim=True) for k in KEYS}
            parts.append((qrow, sq, [q.ndim - 1]))
        for t in (k_, v):
            s = self.st(t)
            if s is not None:
                parts.append(({k: _red(k)(s[k], (-2, -1), keepdim=True) for k in KEYS}, s, [t.ndim - 2, t.ndim - 1]))
        out = {}
        for k in KEYS:
            src = [qrow] if (k in _ANCHOR and qrow is not None) else [p[0] for p in parts]
            val = src[0][k]
            for p in src[1:]:
                val = _combine(k, val, p[k])
            out[k] = val
        out["m"] = torch.maximum(out["m"], _spread([p[1] for p in parts], [p[2] for p in parts]))
        return out


def _axis_geometry(lo: torch.Tensor, hi: torch.Tensor, name: str, axis: str):
    """(size, stride, offset) along one axis from (n,) interval bounds; stride None when n == 1."""
    size = hi - lo + 1
    if not torch.all(size == size[0]):
        raise GeometryError(f"layer {name!r}: receptive-field size varies across columns along {axis} "
                            f"({sorted(set(size.tolist()))[:4]}...): not one geometry")
    c = (lo + hi) / 2
    if len(c) < 2:
        return float(size[0]), None, float(c[0])
    stride = float(c[1] - c[0])
    idx = torch.arange(len(c), dtype=c.dtype)
    if not torch.allclose(c, c[0] + stride * idx, atol=1e-9, rtol=0):
        raise GeometryError(f"layer {name!r}: column centres along {axis} are not evenly spaced")
    return float(size[0]), stride, float(c[0])


def _num(v: float):
    return int(v) if math.isfinite(v) and float(v).is_integer() else v


def readout(state: dict, name: str, image_hw: tuple[int, int]) -> RFGeometry:
    """Geometry of a traced (N, C, h, w) activation (batch item 0, union over channels)."""
    s = {k: v[0] for k, v in state.items()}
    if s["lx"].ndim != 3:
        raise GeometryError(f"layer {name!r} is not a (C, h, w) grid: shape {tuple(s['lx'].shape)}")
    u = {k: (_red(k)(v, 0)) for k, v in s.items()}  # (h, w)
    H, W = image_hw
    if not torch.all(torch.isfinite(u["lx"])):
        raise GeometryError(f"layer {name!r} has columns that do not depend on the image")
    mixed = u["m"] > 0
    if bool(mixed.any()) and not bool(mixed.all()):
        raise GeometryError(f"layer {name!r}: only some columns mix positions; no single geometry")
    if bool(mixed.all()):
        covers = (u["lx"] <= 0) & (u["hx"] >= W - 1) & (u["ly"] <= 0) & (u["hy"] >= H - 1)
        if not bool(covers.all()):
            raise GeometryError(f"layer {name!r} mixes positions over a region smaller than the image (e.g. windowed "
                                "attention or an irregular pooling): not described by one rf size")
        kx, ky = ("ax", "bx"), ("ay", "by")
        if not torch.all(torch.isfinite(u["ax"])):
            raise GeometryError(f"layer {name!r}: global layer whose columns are not attached to image positions")
    else:
        kx, ky = ("lx", "hx"), ("ly", "hy")
    if not torch.all(u[kx[0]] == u[kx[0]][:1]) or not torch.all(u[ky[0]] == u[ky[0]][:, :1]):
        raise GeometryError(f"layer {name!r}: x extent depends on the row (or y on the column)")
    sx, tx, ox = _axis_geometry(u[kx[0]][0], u[kx[1]][0], name, "x")
    sy, ty, oy = _axis_geometry(u[ky[0]][:, 0], u[ky[1]][:, 0], name, "y")
    if tx is None and ty is None:
        raise GeometryError(f"layer {name!r} has a 1x1 grid at this input size: stride undefined; use a larger input")
    tx, ty = tx if tx is not None else ty, ty if ty is not None else tx
    if (sx, tx, ox) != (sy, ty, oy):
        raise GeometryError(f"layer {name!r}: geometry differs between x ({sx}, {tx}, {ox}) and y ({sy}, {ty}, {oy})"
                            " (non-square kernels, strides or asymmetric padding are not supported)")
    size = math.inf if bool(mixed.all()) else sx
    if bool(mixed.all()):
        # the anchor extent is the rf the column had before global mixing: report its centre
        pass
    return RFGeometry(size=_num(size), stride=_num(tx), offset=ox)


def trace_geometry(fn: Callable[[torch.Tensor], dict], x: torch.Tensor) -> dict[str, RFGeometry]:
    """Receptive-field geometry of every output of ``fn`` by tracing one forward pass on ``x``.

    Args:
        fn: maps an (N, 3, H, W) input to {layer: (N, C, h, w) tensor} (e.g. a backbone's forward).
        x: the input (its values do not matter, its size does: TF-"same" padding depends on it).
    Returns:
        {layer: RFGeometry}; global layers have ``size == inf`` (``RFGeometry.is_global``).
    Raises:
        GeometryError: for an op the analysis cannot follow or a layer without a single geometry.
    """
    H, W = x.shape[-2:]
    tr = _Tracer()
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32, device=x.device),
                            torch.arange(W, dtype=torch.float32, device=x.device), indexing="ij")
    shape = x.shape
    init = {"lx": xx, "hx": xx, "ax": xx, "bx": xx, "ly": yy, "hy": yy, "ay": yy, "by": yy,
            "m": torch.zeros_like(xx)}
    with torch.no_grad():
        x = x.detach().clone()
        tr.states[x] = {k: v.expand(shape) for k, v in init.items()}
        with tr:
            outs = fn(x)
        result = {}
        for name, t in outs.items():
            s = tr.st(t)
            if s is None:
                raise GeometryError(f"layer {name!r} does not depend on the image (or the analysis lost track of it)")
            s = {k: v.expand(t.shape) for k, v in s.items()}
            result[name] = readout(s, name, (H, W))
    return result
