"""Print InversionNet's layer table (output shapes, parameters) for a config.

python -m fwi_jax.models [--dims openfwi|narrow|small|tiny|d1,d2,d3,d4,d5]
                         [--shots 5 --time 1000 --receivers 70 --output 70x70]
"""

from __future__ import annotations

from fwi_jax.cli import ArgumentParser
from fwi_jax.models.summary import format_table, layer_table


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.models", description=__doc__.split("\n")[1])
    p.add_argument("--model", default="inversionnet")
    p.add_argument("--dims", default="openfwi", help="width preset or 5 comma-separated ints")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--time", type=int, default=1000)
    p.add_argument("--receivers", type=int, default=70)
    p.add_argument("--output", default="70x70", help="velocity map size HxW")
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args(argv)
    dims = tuple(int(d) for d in a.dims.split(",")) if "," in a.dims else a.dims
    try:
        out = tuple(int(n) for n in a.output.lower().split("x"))
        rows, total = layer_table(a.model, dims, (a.time, a.receivers, a.shots), out, a.batch)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    print(format_table(rows, total))


if __name__ == "__main__":
    main()
