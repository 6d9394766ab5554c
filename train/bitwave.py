"""BitWave: network-wide mantissa/exponent bitlengths steered by the training loss.

One container ``(m, e)`` for every stored tensor, taken from a *ladder* of
containers ordered from widest to narrowest (by default, from bf16's
``m7 e8`` down, alternately dropping a mantissa bit and an exponent bit, to
``m0 e3``).  A controller watches the loss:

* it keeps an exponential moving average ``L`` of the per-step training loss
  (``beta``);
* every ``period`` steps it compares ``L`` with the value ``L_prev`` it had
  at the previous decision: the relative improvement is
  ``g = (L_prev - L) / L_prev``;
* ``g > tol``: the loss keeps improving, so move one rung *down* (fewer
  bits);
* otherwise (stalled, ``|g| <= tol``, or worse, ``g < -tol``): move
  ``up`` rungs up (more bits) and hold there for ``hold`` decisions
  before going down again.

Parameters (defaults): ``beta`` (0.98), ``period`` (5 steps between
decisions), ``tol`` (0.005: relative improvement per period that counts as
progress), ``up`` (1 rung climbed on a stall), ``hold`` (4 decisions spent
at a rung after climbing, during which the controller does not go down),
``ladder`` and ``start`` (rung index to begin at, 0 = bf16).  Signs are elided on non-negative
tensors; ``exp_base`` follows each tensor's running maximum exponent.
"""

from __future__ import annotations

from .qmqe import FixedPolicy

__all__ = ["default_ladder", "BitWaveController", "BitWave"]


def default_ladder(m_max: int = 7, e_max: int = 8, m_min: int = 0, e_min: int = 3) -> list[tuple[int, int]]:
    """Widest first; drop a mantissa bit, then an exponent bit, alternately (exponent stops at e_min)."""
    m, e = m_max, e_max
    out = [(m, e)]
    turn_m = True
    while m > m_min or e > e_min:
        if (turn_m and m > m_min) or e <= e_min:
            m -= 1
        else:
            e -= 1
        turn_m = not turn_m
        out.append((m, e))
    return out


class BitWaveController:
    """The loss-driven rung index (pure logic: feed it losses, read ``rung``)."""

    def __init__(self, n_rungs: int, beta: float = 0.98, period: int = 5, tol: float = 0.005,
                 up: int = 1, hold: int = 4, start: int = 0):
        self.n, self.beta, self.period, self.tol, self.up, self.hold = n_rungs, beta, period, tol, up, hold
        self.rung = start
        self.ema = None
        self.prev = None
        self.count = 0
        self.wait = 0
        self.log: list[tuple[int, float, float, str, int]] = []   # (step, ema, g, action, rung)

    def update(self, loss: float) -> int:
        self.ema = loss if self.ema is None else self.beta * self.ema + (1 - self.beta) * loss
        self.count += 1
        if self.count % self.period:
            return self.rung
        if self.prev is None:
            self.prev = self.ema
            return self.rung
        g = (self.prev - self.ema) / max(abs(self.prev), 1e-12)
        self.prev = self.ema
        if g > self.tol:
            if self.wait > 0:
                self.wait -= 1
                action = "hold"
            else:
                self.rung = min(self.rung + 1, self.n - 1)
                action = "down"
        else:
            self.rung = max(self.rung - self.up, 0)
            self.wait = self.hold
            action = "up"
        self.log.append((self.count, self.ema, g, action, self.rung))
        return self.rung


class BitWave(FixedPolicy):
    name = "bitwave"

    def __init__(self, ladder=None, elide_sign: bool = True, window: str = "running", **ctl):
        super().__init__(7, 8, elide_sign, window)
        self.ladder = ladder or default_ladder()
        self.ctl = BitWaveController(len(self.ladder), **ctl)

    def container(self, p, training):
        return self.ladder[self.ctl.rung]

    def end_step(self, step: int, loss) -> None:
        """The callback: fed each step's training loss (``Attached.step(loss)``)."""
        self.ctl.update(float(loss))
