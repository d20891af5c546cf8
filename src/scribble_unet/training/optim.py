"""AdamW (Loshchilov and Hutter, decoupled weight decay) without ``torch.optim``.

Constructing any ``torch.optim`` optimiser imports ``torch._dynamo`` the first time (torch 2.x wraps
``Optimizer.__init__`` in ``torch._disable_dynamo``). That import takes about a second of CPU, and parts
of it hold the GIL for 250 ms at a time: in napari, pressing Train froze the viewer for that long while
the training thread built its optimiser. This class does the same arithmetic as torch's single-tensor
AdamW (the path torch takes on CPU; ``amsgrad``, ``maximize``, ``capturable`` and friends off), operation
for operation, so results are unchanged; ``tests/training/test_optim.py`` checks it against
``torch.optim.AdamW`` bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class AdamW:
    """AdamW over ``params``: ``param_groups[0]["lr"]`` may be changed between steps."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamW settings: lr {lr}, betas {betas}, eps {eps}, weight decay {weight_decay}")
        self.params = [p for p in params if p.requires_grad]
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        ]
        self.state: dict[torch.nn.Parameter, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in self.params:
            grad = p.grad
            if grad is None:
                continue
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t += 1
            if wd != 0:
                p.mul_(1 - lr * wd)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)
