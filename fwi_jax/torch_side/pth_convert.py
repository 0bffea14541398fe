"""Read and write PyTorch .pth files as flat numpy dicts; also a script converting .pth <-> .npz.

    python pth_convert.py load MODEL.pth OUT.npz     every tensor, nested keys joined by SEP
    python pth_convert.py save IN.npz MODEL.pth      a flat state_dict

Imported in-process where torch is importable, run by another interpreter otherwise. torch is
imported inside the functions, so importing this module never needs it.
"""

from __future__ import annotations

import sys

import numpy as np

SEP = "\x1f"  # joins the keys of nested dicts ('.' already occurs inside state_dict keys)


def read_pth(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a .pth file (no pickled code: weights_only), nested keys joined by SEP."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    flat = {}

    def walk(prefix: tuple[str, ...], o) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                walk(prefix + (str(k),), v)
        elif torch.is_tensor(o):
            flat[SEP.join(prefix)] = o.detach().cpu().numpy()

    walk((), obj)
    return flat


def write_pth(state_dict: dict[str, np.ndarray], path: str) -> None:
    import torch

    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}, path)


if __name__ == "__main__":
    mode, src, dst = sys.argv[1:4]
    try:
        if mode == "load":
            np.savez(dst, **read_pth(src))
        else:
            with np.load(src) as z:
                write_pth({k: z[k] for k in z.files}, dst)
    except Exception as e:  # the caller shows this last line
        first = (str(e).splitlines() or [""])[0]
        print(f"{type(e).__name__}: {first[:200]}", file=sys.stderr)
        sys.exit(1)
