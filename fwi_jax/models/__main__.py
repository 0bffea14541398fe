"""Print a model's layer table (output shapes, parameters) for a config.

python -m fwi_jax.models [--model inversionnet|velocitygan] [--dims openfwi|narrow|small|tiny|d1,d2,d3,d4,d5]
                         [--shots 5 --time 1000 --receivers 70 --output 70x70]
python -m fwi_jax.models tune --config CONFIG [--batch B]   # pick each conv's form on this CPU (models/tune.py)

For velocitygan: the generator's table (an InversionNet of --dims), then the critic's.
"""

from __future__ import annotations

import sys

from fwi_jax.cli import ArgumentParser
from fwi_jax.models import tune
from fwi_jax.models.summary import format_table, layer_table, module_table
from fwi_jax.models.velocitygan import Critic


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:
        tune.main(argv[1:])
        return
    p = ArgumentParser(prog="python -m fwi_jax.models", description=__doc__.split("\n")[1])
    p.add_argument("--model", default="inversionnet", choices=("inversionnet", "velocitygan"))
    p.add_argument("--dims", default="openfwi", help="width preset or 5 comma-separated ints")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--time", type=int, default=1000)
    p.add_argument("--receivers", type=int, default=70)
    p.add_argument("--output", default="70x70", help="velocity map size HxW")
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args(argv)
    try:
        out = tuple(int(n) for n in a.output.lower().split("x"))
        rows, total = layer_table("inversionnet", a.dims, (a.time, a.receivers, a.shots), out, a.batch)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    if a.model == "inversionnet":
        print(format_table(rows, total))
        return
    critic_rows, critic_total = module_table(Critic(), (a.batch, *out, 1))
    print(f"generator (InversionNet): {total:,} parameters\n{format_table(rows, total)}\n")
    print(f"critic: {critic_total:,} parameters\n{format_table(critic_rows, critic_total)}")


if __name__ == "__main__":
    main()
