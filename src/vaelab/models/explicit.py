"""The training step of a SimpleVAE with its network gradients written out by hand: the model's
own forward, loss and backward, which the trainer (:mod:`vaelab.training`) calls as a step.

A step of the seed's model family (:class:`~vaelab.models.SimpleVAE`, LeakyReLU or ReLU) is a
fixed chain of matrix products; autograd records and replays about a hundred small operations
around them, which on a CPU costs more than the products themselves (benchmarks/speed.py).
Here the encoder and decoder run forward and backward with no autograd graph, each product in
the operand layout the BLAS handles fastest (a layer with 2 inputs or outputs is a "skinny"
product, slow in the textbook layout). ``decoder_input`` has no activation, so it and the first
decoder block's Linear run as one layer from the narrow z (:class:`_Pair`): that drops the
full-width products of one of the seed model's three 128-wide layers. Two losses are covered,
each in closed form with its gradients, for one model or stacked weights (a leading model
axis, :mod:`vaelab.training.stack`): the seed's ``seed_mse`` with the N(0, I) prior, below,
and the IWAE bound (any k, a fixed, learned or z-dependent sigma) with the N(0, I) or the
mixture prior, as the default preset trains (:meth:`ExplicitStep._iwae_step`). Any other
loss trains through autograd (:mod:`vaelab.training.plan`).

The closed-form seed loss, per model, on a batch of N standardised points u of dimension D (nats
per point; the convention of :func:`vaelab.objectives.seed_loss`)::

    h = encoder(u); mu = fc_mu(h); lv = fc_var(h); s = exp(lv / 2); z = mu + s * eps
    u_hat = decoder(z)
    reconstruction = mean over N*D of (u_hat - u)^2
    kld = mean over N of sum over latent dims of 0.5 (mu^2 + s^2 - 1 - lv)
    loss = reconstruction + w * kld
    neg_elbo = loss / w + (D / 2) log(2 pi D w / 2) - log|du/dx|   (the implied Gaussian decoder)

Gradients (the chain rule, layer by layer; ``g`` is d loss / d(layer output))::

    d loss / d u_hat = 2 (u_hat - u) / (N D)
    d loss / d mu    = g_z + w mu / N
    d loss / d lv    = g_z (z - mu) / 2 + w (s^2 - 1) / (2 N)
    Linear y = x W^T + b:   dW = g^T x,  db = sum over rows of g,  dx = g W
    LeakyReLU y = max(a, slope a):  da = g where y > 0, slope g elsewhere

tests/test_explicit.py checks them against autograd in float64 for several shapes.

The maths is the models' and objectives'. The densities and constants come from
:mod:`vaelab.objectives.densities` (``LOG_2PI``, the N(0, I) log-density) and
:mod:`vaelab.objectives.seed_loss` (``seed_neg_elbo``). Where a forward value is written out
here in its own order of operations, which its gradient reuses (the seed's KL from s^2, the
Gaussian log-likelihood from r = (u - u_hat) / sigma, log q from eps, the mixture prior's
log-density with its responsibilities), tests/test_maths_once.py pins it equal to the model's
own function (:meth:`~vaelab.models.BaseVAE.log_likelihood`, ``prior.log_prob``,
:func:`~vaelab.objectives.log_normal_diag`) and every loss term to ``model.loss``, for every
prior and loss covered here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from vaelab.models import BaseVAE, SimpleVAE
from vaelab.models.priors import MixturePrior, StandardNormalPrior
from vaelab.objectives.densities import LOG_2PI, standard_normal_log_prob
from vaelab.objectives.seed_loss import seed_neg_elbo

#: a layer with at most this many inputs or outputs is computed in the skinny layout
SKINNY = 8
#: gradients entering the network backward passes are set to 0 below this size. IWAE's
#: softmax weights reach 1e-42, and products of such values with the weights are subnormal
#: floats, which the CPU's BLAS handles on a slow path, many times slower than normal floats
#: (benchmarks/speed.py measures it). 1e-20 keeps products through many layers normal, and is
#: 12 orders below Adam's eps (1e-8), so no update changes measurably.
FLUSH_BELOW = 1e-20


def net_parameter_names(model: SimpleVAE) -> list[str]:
    """The names of the encoder's, heads' and decoder's weights and biases (what the explicit
    backward passes compute), in the order the data flows."""
    lay = Layers.of(model)
    return [f"{prefix}.{kind}" for prefix in (*lay.encoder, "fc_mu", "fc_var",
                                              lay.decoder_input, *lay.decoder, lay.final)
            for kind in ("weight", "bias")]


def split_parameters(template: SimpleVAE, params: Mapping[str, torch.Tensor],
                     buffers: Mapping[str, torch.Tensor]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the networks' weights and biases, the likelihood's and prior's tensors) of a model's
    parameters and buffers by name, one model's or stacked: what :class:`ExplicitStep` takes
    as ``params`` and ``extras``."""
    names = net_parameter_names(template)
    extras = {name: t for name, t in params.items() if name not in names}
    extras["obs_std_fixed"] = buffers["obs_std_fixed"]
    return {name: params[name] for name in names}, extras


class Layers(NamedTuple):
    """Parameter-name prefixes of a SimpleVAE, in the order the data flows."""

    encoder: tuple[str, ...]  # Linear + activation each
    decoder_input: str  # Linear, no activation
    decoder: tuple[str, ...]  # Linear + activation each
    final: str  # Linear, no activation

    @classmethod
    def of(cls, model: SimpleVAE) -> Layers:
        return cls(tuple(f"encoder.{i}.0" for i in range(len(model.encoder))), "decoder_input",
                   tuple(f"decoder.{i}.0" for i in range(len(model.decoder))), "final_layer.0")


def negative_slope(model: SimpleVAE) -> float:
    """The activation's slope for x < 0: LeakyReLU's, or 0 for ReLU."""
    act = model.encoder[0][1]
    if isinstance(act, nn.LeakyReLU):
        return float(act.negative_slope)
    if isinstance(act, nn.ReLU):
        return 0.0
    raise ValueError(f"explicit gradients cover LeakyReLU and ReLU, not {type(act).__name__}")


class _Layer:
    """One Linear layer as the explicit passes use it: its weight and bias, the views of them
    each product takes, and its parameters' names. The views are made once: the optimiser
    updates the parameters in place, so they stay current (and a step saves the Python and
    the view calls of making them again, which for the seed's small networks is measurable)."""

    __slots__ = ("w", "b", "w_t", "b_row", "names", "mm", "skinny_out", "skinny_in")

    def __init__(self, w: torch.Tensor, b: torch.Tensor, prefix: str) -> None:
        """W ``[(M,) out, in]``, b ``[(M,) out]``; ``prefix``: the parameters' name prefix."""
        self.names = (f"{prefix}.weight", f"{prefix}.bias")
        self.w, self.b = w, b
        self.w_t, self.b_row = w.mT, b.unsqueeze(-2)
        self.mm = torch.mm if self.w.ndim == 2 else torch.bmm
        self.skinny_out = self.w.shape[-2] <= SKINNY
        self.skinny_in = self.w.shape[-1] <= SKINNY

    @classmethod
    def named(cls, params: Mapping[str, torch.Tensor], prefix: str) -> _Layer:
        return cls(params[f"{prefix}.weight"], params[f"{prefix}.bias"], prefix)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h W^T + b for h ``[(M,) N, in]``, each product in the layout the BLAS handles
        fastest."""
        if self.skinny_in:  # few inputs: [h | 1] [W | b]^T, the bias in the product
            return self.mm(_with_ones(h), _joined(self.w, self.b).mT)
        if self.skinny_out:  # few outputs: (W h^T)^T is the fast layout
            return self.mm(self.w, h.mT).mT + self.b_row
        if h.ndim == 2:
            return torch.addmm(self.b, h, self.w_t)
        return torch.baddbmm(self.b_row, h, self.w_t)

    def backward(self, g: torch.Tensor, h: torch.Tensor, need_input: bool,
                 grads: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Store dW and db of y = h W^T + b in ``grads`` from g = d loss / dy; return
        d loss / dh (None if not needed)."""
        if self.skinny_in:  # few inputs: [dW | db] = g^T [h | 1], as ([h | 1]^T g)^T
            _split_joined(self.mm(_with_ones(h).mT, g).mT, self.names, grads)
        else:
            grads[self.names[0]] = self.mm(g.mT, h)
            grads[self.names[1]] = g.sum(-2)
        return self.mm(g, self.w) if need_input else None


def _with_ones(h: torch.Tensor) -> torch.Tensor:
    """[h | 1]: ``h`` ``[(M,) N, in]`` with a column of ones, so that a product with
    [W | b] adds the bias (a narrow layer's bias then costs no pass of its own over the
    N x out output, and its gradient comes out of the weight's product)."""
    return torch.cat((h, torch.ones_like(h[..., :1])), dim=-1)


def _joined(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[W | b] ``[(M,) out, in + 1]``."""
    return torch.cat((w, b.unsqueeze(-1)), dim=-1)


def _split_joined(wb: torch.Tensor, names: tuple[str, str],
                  grads: dict[str, torch.Tensor]) -> None:
    """Store [dW | db] ``[(M,) out, in + 1]`` as the two contiguous gradients ``names``."""
    grads[names[0]] = wb[..., :-1].contiguous()
    grads[names[1]] = wb[..., -1].contiguous()


class _Pair:
    """``decoder_input`` (A, a: no activation) and the first decoder block's Linear (B, b)
    as one layer: B (A z + a) + b = C z + c with C = B A, c = B a + b. For a narrow z
    (d <= :data:`SKINNY` against a width r) every product of the pair is then skinny or
    r x r x (d + 1): the full-width N x r x r products (the forward, both backward ones)
    are gone, a third of the seed model's product work. Same values and gradients up to
    rounding (tests/test_explicit.py checks both against autograd in float64).

    With [z | 1] (a column of ones), the forward is one product, [z | 1] [C | c]^T, and
    backward from g = d loss / d(C z + c) ``[(M,) N, r]``, with h = A z + a never formed
    and G = g^T [z | 1] = [g^T z | g^T 1] ``[(M,) r, d + 1]``::

        dB = g^T h = G [A | a]^T      db = g^T 1
        [dA | da] = B^T G             dz = g C
    """

    __slots__ = ("inp", "block", "aug", "joined", "z1")

    def __init__(self, inp: _Layer, block: _Layer) -> None:
        self.inp, self.block = inp, block
        self.aug = _joined(inp.w, inp.b)  # [A | a]
        joined = inp.mm(block.w, self.aug)  # B [A | a] = [C | B a]
        joined[..., -1] += block.b  # [C | c]
        self.joined = joined
        self.z1: torch.Tensor | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.z1 = _with_ones(z)
        return self.inp.mm(self.z1, self.joined.mT)

    def backward(self, g: torch.Tensor, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """Store dA, da, dB and db in ``grads`` (after :meth:`forward`); return
        d loss / dz."""
        mm = self.inp.mm
        g_aug = mm(self.z1.mT, g).mT  # G = g^T [z | 1]
        grads[self.block.names[0]] = mm(g_aug, self.aug.mT)
        grads[self.block.names[1]] = g_aug[..., -1].contiguous()
        _split_joined(mm(self.block.w.mT, g_aug), self.inp.names, grads)
        return mm(g, self.joined[..., :-1])


class ExplicitStep:
    """Loss terms and gradients of a SimpleVAE's training loss, for one model or a stack.

    ``params``: the networks' weights and biases by name (:func:`net_parameter_names`), as
    ``model.named_parameters()`` gives them, or stacked along a leading model axis
    (``torch.func.stack_module_state``; the closed-form losses only). ``extras``: the
    likelihood's and prior's tensors by name (``obs_std_raw``, the ``obs_std_fixed`` buffer or
    sigma(z)'s ``std_head.*``, ``prior.*``), stacked as ``params`` are, which the closed-form
    IWAE bound reads and whose gradients it stores. Calling it with a batch ``x`` (``[N, D]``,
    or ``[M, N, D]`` stacked), the noise ``eps`` (``[N, d]``, ``[S, N, d]`` for S draws per
    point, or with a leading M) and the KL weight (a float, or ``[M]``) stores every gradient in
    ``param.grad`` and returns the loss terms (``[4]`` / ``[M, 4]``, in
    :class:`~vaelab.objectives.LossTerms` order) and z.

    """

    def __init__(self, template: SimpleVAE, params: Mapping[str, torch.Tensor],
                 shift: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 extras: Mapping[str, torch.Tensor] | None = None,
                 rotation: torch.Tensor | None = None) -> None:
        self.template = template
        self.slope = negative_slope(template)
        self.p = dict(params)
        lay = Layers.of(template)
        self.enc = [_Layer.named(self.p, name) for name in lay.encoder]
        self.dec_in = _Layer.named(self.p, lay.decoder_input)
        self.dec = [_Layer.named(self.p, name) for name in lay.decoder]
        self.final = _Layer.named(self.p, lay.final)
        # decoder_input has no activation, so with a narrow z it joins the first block's
        # Linear (_Pair): one skinny product instead of a full-width one, forward and back
        self.pair = self.dec_in.skinny_in
        self.shift, self.scale = shift, scale  # standardisation ([D] or [M, D]), or None
        self.rotation = rotation  # the principal axes ([D, D] or [M, D, D]), or None
        # the Jacobian term of neg_elbo: -log|du/dx| = sum(log scale), per model
        self.log_scale_sum = scale.log().sum(-1) if scale is not None else None
        # the likelihood's and the prior's tensors by name (obs_std_raw or obs_std_fixed,
        # prior.*), stacked or not as the network's are: the closed-form IWAE bound reads them
        self.extras = dict(extras or {})
        self.learn_std, self.min_std = template.learn_std, template.min_std
        # sigma(z) = min_std + softplus(head(h / width)), h the decoder's last hidden layer
        self.std_head = (_Layer.named(self.extras, "std_head")
                         if template.std_head is not None else None)
        self.width = template.feature_width() if self.std_head is not None else 1
        self.prior_kind = type(template.prior)
        if template.objective == "seed_mse" and template.prior.is_standard:
            self.kind = "seed"
        elif (template.objective == "iwae"
              and isinstance(template.prior, StandardNormalPrior | MixturePrior)):
            self.kind = "iwae"
        else:
            raise ValueError("explicit gradients cover the closed-form losses only")
        # every tensor a gradient is stored in, by name (store, and the compiled steps)
        self.named = {**self.p, **self.extras}
        # the names of the gradients gradients() returns, in its order
        self.grad_names = list(self.p)
        if self.std_head is not None and self.kind != "iwae":
            raise ValueError("explicit gradients cover a decoder sigma(z) with the iwae loss")
        # a full covariance L(z) L(z)^T: the head's outputs past the D of the diagonal are
        # L's entries below it, row-major (as BaseVAE.decode_params_internal places them)
        self.full = template.full_covariance
        if self.full:
            d = template.in_channels
            # on the weights' device: a host index would be a copy inside a CUDA graph
            device = next(iter(self.extras.values())).device
            self.tril_rows, self.tril_cols = torch.tril_indices(d, d, -1, device=device)
        if self.kind == "iwae":
            if self.std_head is not None:
                self.grad_names += list(self.std_head.names)
            elif self.learn_std:
                self.grad_names.append("obs_std_raw")
            if self.prior_kind is MixturePrior:
                self.grad_names += [f"prior.{k}" for k in ("means", "log_stds", "logits")]

    @classmethod
    def for_model(cls, model: BaseVAE) -> ExplicitStep:
        if not isinstance(model, SimpleVAE):
            raise ValueError(f"explicit gradients cover SimpleVAE, not {type(model).__name__}")
        std = model.standardized
        net, extras = split_parameters(model, dict(model.named_parameters()),
                                       dict(model.named_buffers()))
        return cls(model, net, model.data_shift if std else None,
                   model.data_scale if std else None, extras,
                   model.data_rotation if std else None)

    # -- the networks, forward and backward ----------------------------------------------------
    def _encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list, list]:
        """(mu, log_var, layer inputs, layer outputs) of the encoder and its two heads, which
        run as one layer; the last "input" is that joined layer, for the backward."""
        ins, outs = [], []
        h = u
        for layer in self.enc:
            ins.append(h)
            h = torch.nn.functional.leaky_relu_(layer.forward(h), self.slope)
            outs.append(h)
        p = self.p  # the heads, joined: their weights change every step, so joined anew
        heads = _Layer(torch.cat((p["fc_mu.weight"], p["fc_var.weight"]), dim=-2),
                       torch.cat((p["fc_mu.bias"], p["fc_var.bias"]), dim=-1), "heads")
        out = heads.forward(h)
        ins.append(heads)
        latent = p["fc_mu.weight"].shape[-2]
        return out[..., :latent], out[..., latent:], ins, outs

    def _decode(self, z: torch.Tensor) -> tuple[torch.Tensor, list, list]:
        """(u_hat, layer inputs, activated layer outputs) of the decoder. With a narrow z,
        ``decoder_input`` and the first block's Linear run as one product (:class:`_Pair`),
        whose place in the inputs it takes, as the heads' does in the encoder's."""
        ins: list = [z]
        outs = []
        if self.pair:
            pair = _Pair(self.dec_in, self.dec[0])
            ins.append(pair)
            c = torch.nn.functional.leaky_relu_(pair.forward(z), self.slope)
            outs.append(c)
            rest = self.dec[1:]
        else:
            c = self.dec_in.forward(z)
            rest = self.dec
        for layer in rest:
            ins.append(c)
            c = torch.nn.functional.leaky_relu_(layer.forward(c), self.slope)
            outs.append(c)
        ins.append(c)
        return self.final.forward(c), ins, outs

    def _decoder_backward(self, g: torch.Tensor, ins: list, outs: list,
                          grads: dict[str, torch.Tensor],
                          g_last: torch.Tensor | None = None) -> torch.Tensor:
        """Store the decoder's gradients from g = d loss / d u_hat (and ``g_last``, a
        gradient on the last hidden layer from elsewhere: sigma(z)'s head); return
        d loss / dz."""
        g = self.final.backward(g, ins[-1], True, grads)
        if g_last is not None:
            g = g.add_(g_last)
        for i in reversed(range(len(self.dec))):
            g = torch.ops.aten.leaky_relu_backward(g, outs[i], self.slope, True)
            if i == 0 and self.pair:  # the first block and decoder_input, as one (_Pair)
                return ins[1].backward(g, grads)
            g = self.dec[i].backward(g, ins[i + 1], True, grads)
        return self.dec_in.backward(g, ins[0], True, grads)

    def _encoder_backward(self, g_mu: torch.Tensor, g_lv: torch.Tensor, ins: list, outs: list,
                          grads: dict[str, torch.Tensor]) -> None:
        """Store the heads' and encoder's gradients from d loss / d mu and d loss / d log_var."""
        latent = g_mu.shape[-1]
        joined: dict[str, torch.Tensor] = {}
        g = ins[-1].backward(torch.cat((g_mu, g_lv), dim=-1), outs[-1], True, joined)
        dw, db = joined["heads.weight"], joined["heads.bias"]
        grads["fc_mu.weight"] = dw[..., :latent, :].contiguous()
        grads["fc_var.weight"] = dw[..., latent:, :].contiguous()
        grads["fc_mu.bias"] = db[..., :latent].contiguous()
        grads["fc_var.bias"] = db[..., latent:].contiguous()
        for i in reversed(range(len(self.enc))):
            g = torch.ops.aten.leaky_relu_backward(g, outs[i], self.slope, True)
            g = self.enc[i].backward(g, ins[i], i > 0, grads)

    # -- the step ------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, eps: torch.Tensor,
                 kl_weight: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        terms, z, grads = self.gradients(x, eps, kl_weight)
        self.store(grads)
        return terms, z

    def inputs(self) -> dict[str, torch.Tensor]:
        """Every tensor :meth:`gradients` reads besides its arguments, by name: the networks'
        weights and biases, the likelihood's and prior's tensors, and the standardisation
        (``data_shift``, ``data_scale``, and ``data_rotation`` where the model decorrelates)
        where there is one."""
        tensors = dict(self.named)
        if self.shift is not None:
            tensors.update(data_shift=self.shift, data_scale=self.scale)
        if self.rotation is not None:
            tensors.update(data_rotation=self.rotation)
        return tensors

    def gradients(self, x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(loss terms, z, every gradient by name, in :attr:`grad_names` order), with no side
        effect (nothing is stored in ``.grad``): a pure function of its inputs and
        :meth:`inputs`, which :mod:`vaelab.training.aot` compiles ahead of time."""
        if self.kind == "seed":
            return self._seed_step(x, eps, kl_weight)
        return self._iwae_step(x, eps, kl_weight)

    def store(self, grads: Mapping[str, torch.Tensor]) -> None:
        """Put each gradient in its tensor's ``.grad``."""
        for name, grad in grads.items():
            self.named[name].grad = grad

    @torch.no_grad()
    def _seed_step(self, x: torch.Tensor, eps: torch.Tensor, kl_weight: float | torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        u = self._standardize(x)
        n, dim = u.shape[-2], u.shape[-1]
        w = kl_weight
        w_b = w.view(-1, 1, 1) if isinstance(w, torch.Tensor) and w.ndim == 1 else w

        mu, log_var, enc_in, enc_out = self._encode(u)
        std = torch.exp(0.5 * log_var)
        z = torch.addcmul(mu, std, eps)
        u_hat, dec_in, dec_out = self._decode(z)

        # loss terms (module docstring)
        diff = u_hat - u
        reconstruction = diff.square().mean((-2, -1))
        var = std.square()
        kld = (0.5 * (mu.square() + var - 1.0 - log_var).sum(-1)).mean(-1)
        loss = reconstruction + w * kld
        neg_elbo = seed_neg_elbo(loss, w, dim)
        if self.log_scale_sum is not None:
            neg_elbo = neg_elbo + self.log_scale_sum
        terms = torch.stack((loss, reconstruction, kld, neg_elbo), dim=-1)

        grads: dict[str, torch.Tensor] = {}
        g_u_hat = diff.mul_(2.0 / (n * dim))  # diff is not needed any more
        g_z = self._decoder_backward(g_u_hat, dec_in, dec_out, grads)
        # through z = mu + std * eps and the closed-form KL (module docstring)
        kl_scale = w_b * (1.0 / n) if isinstance(w_b, torch.Tensor) else w_b / n
        g_mu = torch.add(g_z, mu * kl_scale)
        g_lv = g_z.mul_(z - mu).add_((var - 1.0) * kl_scale).mul_(0.5)
        self._encoder_backward(g_mu, g_lv, enc_in, enc_out, grads)
        return terms, z, {name: grads[name] for name in self.p}

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            return x
        if self.rotation is None:
            return (x - self.shift.unsqueeze(-2)) / self.scale.unsqueeze(-2)
        return ((x - self.shift.unsqueeze(-2)) @ self.rotation) / self.scale.unsqueeze(-2)

    def _draws_pass(self, x: torch.Tensor, eps: torch.Tensor) -> tuple:
        """Standardise, encode, draw z = mu + std * eps (eps ``[(M,) N, d]`` or
        ``[(M,) S, N, d]`` for S draws per point) and decode every draw: (u, mu, log_var, z,
        u_hat, encoder caches, decoder caches)."""
        u = self._standardize(x)
        mu, log_var, enc_in, enc_out = self._encode(u)
        if eps.ndim > x.ndim:  # draws: [(M,) S, N, d] against [(M,) N, d]
            z = torch.addcmul(mu.unsqueeze(-3), torch.exp(0.5 * log_var).unsqueeze(-3), eps)
        else:
            z = torch.addcmul(mu, torch.exp(0.5 * log_var), eps)
        rows = z.reshape(*x.shape[:-2], -1, z.shape[-1])  # [(M,) S * N, d]
        u_hat, dec_in, dec_out = self._decode(rows)
        return (u, mu, log_var, z, u_hat.view(*z.shape[:-1], u_hat.shape[-1]),
                (enc_in, enc_out), (dec_in, dec_out))

    def _through_z(self, g_z: torch.Tensor, diff: torch.Tensor, g_mu: torch.Tensor | None,
                   g_lv: torch.Tensor, enc_in: list, enc_out: list,
                   grads: dict[str, torch.Tensor]) -> None:
        """Carry d loss / dz (``[(M,) S, N, d]`` or ``[(M,) N, d]``) through
        z = mu + std * eps onto the direct d loss / d mu (None: none) and d loss / d log_var
        (broadcastable to ``[(M,) N, d]``): d z / d mu = 1, d z / d log_var = (z - mu) / 2 =
        ``diff`` / 2; then run the encoder backward, adding its gradients to ``grads``."""
        through_mu = _sum_draws(g_z, g_lv)
        g_mu = through_mu if g_mu is None else g_mu.add_(through_mu)
        g_lv = torch.add(g_lv, _sum_draws(g_z * diff, g_lv), alpha=0.5)
        self._encoder_backward(g_mu, g_lv, enc_in, enc_out, grads)

    @torch.no_grad()
    def _iwae_step(self, x: torch.Tensor, eps: torch.Tensor, b: float | torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The IWAE bound of :func:`vaelab.objectives.iwae_loss`, in closed form, for one
        model (x ``[N, D]``, eps ``[S, N, d]``, the KL weight b a float) or a stack (a leading
        model axis M on x, eps and every weight; b a float or ``[M]``).

        Per point n and draw s (nats; u the standardised point, r = (u - u_hat) / sigma)::

            log_lik = sum_d (-r^2 / 2 - log sigma - log(2 pi) / 2) + log|du/dx|
            log_q   = log N(z; mu, diag exp(lv)) = sum_d (-eps^2 / 2 - lv / 2 - log(2 pi) / 2)
            log_p   = log p(z) (standard or mixture)
            log_w   = log_lik - b (log_q - log_p),  alpha = softmax over s of log_w
            loss    = -mean over n of (logsumexp over s of log_w - log S)

        so d loss / d log_w = -alpha / N. With a full covariance L(z) (lower triangular, its
        diagonal sigma(z)), r = L^-1 (u - u_hat) and the same sums hold. Written in eps
        (z = mu + exp(lv / 2) eps), log_q depends on lv alone: its gradient is -b/2 per latent
        dimension and point (the alphas of a point sum to 1), and z's gradient comes from the
        decoder and log p only.
        """
        lead = x.ndim - 2  # 1 for a stack of models
        u, mu, log_var, z, u_hat, (enc_in, enc_out), (dec_in, dec_out) = self._draws_pass(x, eps)
        draws, n, latent = z.shape[-3:]
        # one KL weight per model, against [M, S, N]; a float (or 0-d tensor) for all
        b_t = b.view(-1, 1, 1) if isinstance(b, torch.Tensor) and b.ndim == 1 else b

        if self.std_head is None:
            sigma = self._sigma()  # [(M,) D]
            sigma_b = _for_draws(sigma, lead, 2)  # [(M, 1, 1,) D]
        else:  # sigma(z) = min + softplus(a), a = head(h / width), per draw and point
            h_scaled = dec_in[-1] / self.width  # [(M,) S * N, W]
            a = self.std_head.forward(h_scaled)
            dim = u_hat.shape[-1]
            a_diag = a[..., :dim] if self.full else a
            sigma = sigma_b = (self.min_std + torch.nn.functional.softplus(a_diag)
                               ).view(u_hat.shape)
        if self.full:  # r = L^-1 (u - u_hat), L = below + diag(sigma); v = L^-T r
            below = a[..., dim:].reshape(*u_hat.shape[:-1], -1)
            tril = torch.diag_embed(sigma)
            tril[..., self.tril_rows, self.tril_cols] = below
            r = torch.linalg.solve_triangular(
                tril, (u.unsqueeze(-3) - u_hat).unsqueeze(-1), upper=False)
            v = torch.linalg.solve_triangular(tril.mT, r, upper=True).squeeze(-1)
            r = r.squeeze(-1)
        else:
            r = (u.unsqueeze(-3) - u_hat) / sigma_b  # [(M,) S, N, D]
        # (with L: -|r|^2 / 2 - sum log diag L, the same sum as a diagonal sigma's)
        log_lik = _log_likelihood(r, sigma, self.log_scale_sum, lead)
        log_q = _log_q(eps, log_var)
        log_p, dlogp_dz, prior_grads = _prior_terms(self.prior_kind, self.extras, z, lead)
        log_ratio = log_q - log_p
        log_w = (torch.sub(log_lik, log_ratio, alpha=b_t) if isinstance(b_t, float)
                 else log_lik - b_t * log_ratio)
        lse = torch.logsumexp(log_w, dim=-2)  # [(M,) N]
        reconstruction = -log_lik.mean((-2, -1))
        kld = log_ratio.mean((-2, -1))
        terms = torch.stack(((math.log(draws) - lse).mean(-1), reconstruction, kld,
                             reconstruction + kld), dim=-1)

        alpha = torch.exp(log_w - lse.unsqueeze(-2)).mul_(1.0 / n)  # -d loss / d log_w
        a_lik = alpha.unsqueeze(-1)  # -d loss / d log_lik, [(M,) S, N, 1]
        # d log_lik / d u_hat: L^-T r, which is r / sigma for a diagonal L
        g_u_hat = _flush_tiny(a_lik * (v if self.full else r / sigma_b)).neg_()
        grads: dict[str, torch.Tensor] = {}
        g_last = None
        if self.full:  # d log_lik / d L = v r^T below the diagonal, v r - 1 / sigma on it
            g_diag = (-(a_lik * (v * r - 1.0 / sigma_b))).mul_(
                torch.sigmoid(a_diag.reshape(r.shape)))
            g_below = -(a_lik * v[..., self.tril_rows] * r[..., self.tril_cols])
            g_a = torch.cat((g_diag, g_below), dim=-1)
            g_h = self.std_head.backward(g_a.view(a.shape), h_scaled, True, grads)
            g_last = g_h.div_(self.width)
        elif self.std_head is not None:  # d loss / d sigma(z) = -alpha (r^2 - 1) / sigma
            g_a = (-(a_lik * (r.square() - 1.0)) / sigma_b).mul_(torch.sigmoid(a.view(r.shape)))
            g_h = self.std_head.backward(g_a.view(a.shape), h_scaled, True, grads)
            g_last = g_h.div_(self.width)
        elif self.learn_std:  # sigma = min + softplus(raw)
            raw = self.extras["obs_std_raw"]
            g_sigma = -(a_lik * (r.square() - 1.0)).sum((-3, -2)) / sigma
            g_raw = g_sigma * torch.sigmoid(raw)
        a_ratio = b_t * alpha  # d loss / d log_q = -d loss / d log_p, [(M,) S, N]
        others = prior_grads(-a_ratio)
        if self.learn_std and self.std_head is None:
            others["obs_std_raw"] = g_raw
        g_z = self._decoder_backward(g_u_hat.reshape(*x.shape[:-2], -1, g_u_hat.shape[-1]),
                                     dec_in, dec_out, grads, g_last).view(z.shape)
        # the prior's part: d loss / d log_p * d log_p / dz
        g_z.sub_(_flush_tiny(a_ratio.unsqueeze(-1) * dlogp_dz))
        # log q's part (the docstring): -1/2 per unit of d loss / d log_q, summed over draws
        g_lv = a_ratio.sum(-2).unsqueeze(-1).mul_(-0.5)  # [(M,) N, 1]
        self._through_z(g_z, z - mu.unsqueeze(-3), None, g_lv, enc_in, enc_out, grads)
        grads.update(others)
        return terms, z, {name: grads[name] for name in self.grad_names}

    def _sigma(self) -> torch.Tensor:
        """The decoder's sigma per data dimension, ``[(M,) D]`` (as ``BaseVAE.obs_std``)."""
        if self.learn_std:
            return self.min_std + torch.nn.functional.softplus(self.extras["obs_std_raw"])
        return self.extras["obs_std_fixed"]


def _flush_tiny(g: torch.Tensor | None) -> torch.Tensor | None:
    """``g`` with its entries of at most :data:`FLUSH_BELOW` in size set to 0 (one kernel:
    ``hardshrink`` keeps x where |x| > lambda and sets 0 elsewhere)."""
    if g is None:
        return None
    return torch.nn.functional.hardshrink(g, FLUSH_BELOW)


def _sum_draws(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a ``[(M,) S, N, d]`` gradient over its draws to the rank of ``like``
    (``[(M,) N, d]``, or broadcastable to it)."""
    return g.sum(-3) if g.ndim > like.ndim else g


def _for_draws(t: torch.Tensor, lead: int, extra: int) -> torch.Tensor:
    """``t`` (``[(M,) ...]``) with ``extra`` unit axes after its model axis, if it has one, so
    that it broadcasts against tensors with draw and point axes; unchanged for one model."""
    if not lead:
        return t
    return t.view(*t.shape[:lead], *(1,) * extra, *t.shape[lead:])


def _log_likelihood(r: torch.Tensor, sigma: torch.Tensor, log_scale_sum: torch.Tensor | None,
                    lead: int) -> torch.Tensor:
    """log p(x|z) per draw and point, ``[(M,) S, N]``, in data units, from the standardised
    residuals r = (u - u_hat) / sigma ``[(M,) S, N, D]``, sigma ``[(M,) D]`` (or, a decoder
    sigma(z), ``[(M,) S, N, D]`` like r) and
    ``log_scale_sum`` = sum(log scale) (``[(M,)]``; None: no standardisation)::

        sum_d (-r^2 / 2 - log sigma - log(2 pi) / 2) - sum(log scale)

    :func:`vaelab.objectives.gaussian_log_likelihood` plus the model's Jacobian, summed in
    another order (r is what the gradient needs); tests/test_maths_once.py pins the two equal.
    """
    const = -(torch.log(sigma).sum(-1) + 0.5 * LOG_2PI * sigma.shape[-1])
    if sigma.ndim == r.ndim:  # sigma(z): one per draw, point and dimension, like r
        if log_scale_sum is not None:
            const = const - _for_draws(log_scale_sum, lead, 2)
        return torch.add(const, r.square().sum(-1), alpha=-0.5)
    if log_scale_sum is not None:
        const = const - log_scale_sum
    return torch.add(_for_draws(const, lead, 2), r.square().sum(-1), alpha=-0.5)


def _log_q(eps: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log q(z|x) = log N(z; mu, diag exp(lv)) per draw at z = mu + exp(lv / 2) eps,
    ``[(M,) S, N]``, written in eps (eps ``[(M,) S, N, d]``, log_var ``[(M,) N, d]``)::

        -(sum eps^2 + sum lv + d log(2 pi)) / 2

    :func:`vaelab.objectives.log_normal_diag` at that z, in eps; tests/test_maths_once.py pins
    the two equal."""
    return (eps.square().sum(-1).add_(log_var.sum(-1).unsqueeze(-2))
            .add_(eps.shape[-1] * LOG_2PI).mul_(-0.5))


def _prior_terms(kind: type, tensors: Mapping[str, torch.Tensor], z: torch.Tensor,
                 lead: int) -> tuple:
    """(log p(z) ``[(M,) S, N]``, d log p / dz ``[(M,) S, N, d]``, and a function mapping
    c = d loss / d log p ``[(M,) S, N]`` to the prior parameters' gradients by name).

    ``tensors``: the prior's parameters by name (``prior.means``...), ``[(M,) C, ...]``.

    The standard prior's log-density is :func:`vaelab.objectives.standard_normal_log_prob`,
    the one :class:`~vaelab.models.priors.StandardNormalPrior` uses. The mixture's is written
    out here, in the order its responsibilities ``gamma`` (which its gradients need) come
    from; tests/test_maths_once.py pins it equal to ``MixturePrior.log_prob``.
    """
    if kind is StandardNormalPrior:  # log N(z; 0, I), d/dz = -z
        return standard_normal_log_prob(z), z.neg(), lambda c: {}
    # mixture: log p = logsumexp_c (log pi_c + log N(z; m_c, diag s_c^2)), gamma = posterior.
    # With a = 1 / s^2 the square expands, sum_d (z - m)^2 a = z^2 . a - 2 z . (m a) + m^2 . a,
    # so every (point, component) pair is one small matrix product: [z^2, z] @ [-a / 2, m a]^T,
    # not a [points, C, d] tensor (measured: the step's prior cost grew with C, not any more).
    means, log_stds, logits = (tensors[f"prior.{k}"] for k in ("means", "log_stds", "logits"))
    a = torch.exp(-2.0 * log_stds)  # [(M,) C, d]
    ma = means * a
    log_pi = torch.log_softmax(logits, -1)  # [(M,) C]
    const = (log_pi - log_stds.sum(-1) - 0.5 * LOG_2PI * means.shape[-1]
             - 0.5 * (means * ma).sum(-1))
    shape = z.shape[:-1]  # [(M,) S, N]
    zf = z.reshape(*z.shape[:lead], -1, z.shape[-1])  # [(M,) S*N, d]
    zz = torch.cat((zf.square(), zf), -1)  # [(M,) S*N, 2d]
    weights = torch.cat((-0.5 * a, ma), -1).transpose(-1, -2)  # [(M,) 2d, C]
    joint = torch.matmul(zz, weights) + const.unsqueeze(-2)  # [(M,) S*N, C]
    log_p = torch.logsumexp(joint, dim=-1)  # [(M,) S*N]
    gamma = torch.exp(joint - log_p.unsqueeze(-1))  # [(M,) S*N, C]
    # d log p / dz = -sum_c gamma (z - m_c) a_c = gamma @ (m a) - z * (gamma @ a)
    dlogp_dz = torch.matmul(gamma, ma) - zf * torch.matmul(gamma, a)

    def grads(c: torch.Tensor) -> dict[str, torch.Tensor]:
        # d log p / d means = gamma (z - m) a; / d log_stds = gamma ((z - m)^2 a - 1);
        # / d logits = gamma - pi; each summed over the points with c, by the same expansion
        cg = c.reshape(*c.shape[:lead], -1).unsqueeze(-1) * gamma  # [(M,) S*N, C]
        total = cg.sum(-2).unsqueeze(-1)  # [(M,) C, 1]
        cg_t = cg.transpose(-1, -2)
        cz, cz2 = torch.matmul(cg_t, zf), torch.matmul(cg_t, zf.square())  # [(M,) C, d]
        return {"prior.means": a * (cz - means * total),
                "prior.log_stds": a * (cz2 - 2.0 * means * cz + means.square() * total) - total,
                "prior.logits": total.squeeze(-1)
                - c.sum((-2, -1)).unsqueeze(-1) * torch.exp(log_pi)}

    log_p, dlogp_dz = log_p.view(shape), dlogp_dz.view(*shape, z.shape[-1])
    return log_p, dlogp_dz, grads
