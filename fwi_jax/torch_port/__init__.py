"""Import reference (PyTorch) InversionNet weights as a fwi_jax checkpoint, and export them back.

    python -m fwi_jax.torch_port import MODEL.pth --dataset flatvel-a --workdir runs/imported
    python -m fwi_jax.torch_port export --workdir runs/imported --out MODEL.pth [--checkpoint best]

The imported checkpoint works with `python -m fwi_jax.evaluate` and `python -m fwi_jax.predict`.
Reading and writing .pth needs PyTorch: in this process when `import torch` works, otherwise the
interpreter named by FWI_JAX_TORCH_PYTHON (see `fwi_jax.torchenv`).

Modules: `keymap` (reference names <-> fwi_jax paths and layouts), `pth` (.pth files),
`checkpoints` (import into / export from a workdir), `cli` (the command).
"""

from fwi_jax.torch_port.checkpoints import export_state_dict, import_state_dict
from fwi_jax.torch_port.cli import main
from fwi_jax.torch_port.keymap import (
    critic_key_map,
    flax_to_torch,
    get_path,
    key_map,
    state_dict_to_variables,
    torch_to_flax,
    variables_to_state_dict,
)
from fwi_jax.torch_port.pth import load_pth, save_pth

__all__ = [
    "critic_key_map",
    "export_state_dict",
    "flax_to_torch",
    "get_path",
    "import_state_dict",
    "key_map",
    "load_pth",
    "main",
    "save_pth",
    "state_dict_to_variables",
    "torch_to_flax",
    "variables_to_state_dict",
]
