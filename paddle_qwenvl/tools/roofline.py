"""Measured rates against the machine's limits: Limit, a limit re-probed around each measurement,
and Rows, the printed rows (rate, share of the limit, stock Paddle) and the targets they are held to.
"""


class Limit:
    """A machine limit (DRAM GB/s, GEMM GFLOP/s) from `probe()`, re-probed around every measurement."""

    def __init__(self, probe, rounds: int = 1):
        self.probe, self.rounds, self.best = probe, rounds, 0.0

    def around(self, measure) -> tuple:
        """(value, limit): `rounds` times a probe, measure(), a probe; the best value and the
        highest probe of those rounds (measurement and limit taken from the same stretch of time)."""
        value, limit = 0.0, self.probe()
        for _ in range(self.rounds):
            value = max(value, measure())
            limit = max(limit, self.probe())
        self.best = max(self.best, limit)
        return value, limit


class Rows:
    """Prints one row per measurement; the rows given a target are reported again by print_targets."""

    def __init__(self):
        self.targeted = []      # (name, value, limit, stock, target)

    def row(self, name: str, measured: tuple, unit: str, stock: float = None, target: tuple = None) -> None:
        """measured: (value, limit) as Limit.around returns it. target: ("limit", fraction) or
        ("stock", ratio), the row's goal."""
        value, limit = measured
        share = f"{value / limit:6.1%} of {limit:6.1f}" if limit else ""
        extra = f"   stock Paddle {stock:8.3g} {unit}  (x{value / stock:.1f})" if stock else ""
        print(f"  {name:<44} {value:8.1f} {unit}  {share}{extra}", flush=True)
        if target:
            self.targeted.append((name, value, limit, stock, target))

    def print_targets(self) -> None:
        """The targets, row by row, as this run measured them. A GEMM's limit is oneDNN's GEMM in the
        row's dtype: where stock Paddle already runs near it (fp32 on Intel, where Paddle's matmul
        is MKL), 3x stock is beyond the machine and the line says so."""
        if self.targeted:
            print("targets in this run:")
        for name, value, limit, stock, (kind, goal) in self.targeted:
            got = value / limit if kind == "limit" else value / stock
            shown = (f"{got:.1%} of the limit (>= {goal:.0%})" if kind == "limit"
                     else f"x{got:.1f} stock (>= x{goal:g})")
            note = ""
            if kind == "stock" and goal * stock > limit:
                note = (f"; stock runs at {stock / limit:.0%} of the oneDNN limit, so x{goal:g} would be "
                        f"{goal * stock / limit:.1f}x that limit")
            print(f"  {'met   ' if got >= goal else 'MISSED'}  {name:<44} {shown}{note}")
