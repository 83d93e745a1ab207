"""SGD with momentum as a handful of multi-tensor (foreach) ops, its lr read from a device tensor.

The same update as torch.optim.SGD (dampening 0, no Nesterov): buf = momentum * buf + (grad + wd * p);
p -= lr * buf. Written out because every op here is safe inside a CUDA graph: the state exists from the
start (no lazy creation on the first step) and the lr is a tensor, so changing it at a milestone is an
in-place fill and a captured step never needs capturing again.
"""
from __future__ import annotations

import torch


class ForeachSGD:
    def __init__(self, params, lr: float, momentum: float, weight_decay: float, foreach: bool = True):
        self.params = [p for p in params if p.requires_grad]
        self.momentum, self.weight_decay, self.foreach = momentum, weight_decay, foreach
        self.lr = torch.tensor(lr, dtype=torch.float32, device=self.params[0].device)
        self.bufs = [torch.zeros_like(p) for p in self.params]  # 0 * m + g = g: torch's first step exactly

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)  # in place: a captured graph reads the new value on its next replay

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if self.foreach:
            d_p = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
            torch._foreach_mul_(self.bufs, self.momentum)
            torch._foreach_add_(self.bufs, d_p)
            torch._foreach_sub_(self.params, torch._foreach_mul(self.bufs, self.lr))
            return
        for p, g, buf in zip(self.params, grads, self.bufs):  # the reference loop, one kernel chain per tensor
            buf.mul_(self.momentum).add_(g + self.weight_decay * p)
            p.sub_(buf * self.lr)

    def state_dict(self) -> dict:
        # the live buffers, as torch.optim's state_dict gives them: a checkpoint copies them (rundir.host_copy)
        return {"lr": self.lr.item(), "momentum_buffers": [b.detach() for b in self.bufs]}

    def load_state_dict(self, state: dict) -> None:
        self.lr.fill_(state["lr"])
        for b, saved in zip(self.bufs, state["momentum_buffers"]):
            b.copy_(saved)
