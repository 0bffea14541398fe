"""`python -m fwi_jax.torch_port import|export` (see the package docstring)."""

from __future__ import annotations

from fwi_jax.cli import ArgumentParser
from fwi_jax.fileio import check_output_dir, check_output_file
from fwi_jax.torch_port.checkpoints import export_state_dict, import_state_dict
from fwi_jax.torch_port.pth import load_pth, save_pth


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(
        prog="python -m fwi_jax.torch_port",
        description="Import reference InversionNet weights (.pth) as a fwi_jax checkpoint, or export them.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="reference .pth -> fwi_jax checkpoint in --workdir")
    imp.add_argument("pth")
    imp.add_argument("--dataset", required=True, help="OpenFWI dataset the weights were trained on (normalization)")
    imp.add_argument("--workdir", required=True)
    imp.add_argument("--dims", default="openfwi", help="width preset of the weights (default: the reference's)")
    imp.add_argument("--critic", default=None, help="a VelocityGAN critic's .pth: import generator + critic")
    exp = sub.add_parser("export", help="fwi_jax checkpoint -> .pth the reference loads")
    exp.add_argument("--workdir", required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument("--checkpoint", default="best")
    exp.add_argument("--critic-out", default=None, help="also write a VelocityGAN workdir's critic here")
    a = p.parse_args(argv)
    try:
        if a.cmd == "import":
            check_output_dir(a.workdir, "--workdir", inputs=(a.pth, a.critic))
            critic = load_pth(a.critic) if a.critic else None
            out = import_state_dict(load_pth(a.pth), a.dataset, a.workdir, a.dims, critic_state_dict=critic)
            print(
                f"imported {a.pth} into {out}; evaluate with python -m fwi_jax.evaluate --workdir {out} "
                f"--data-root DATASET_DIR, or predict with python -m fwi_jax.predict --workdir {out} ..."
            )
        else:
            check_output_file(a.out, "--out", inputs=(a.workdir,), example="model.pth")
            if a.critic_out:
                check_output_file(a.critic_out, "--critic-out", inputs=(a.workdir, a.out), example="critic.pth")
            sd = export_state_dict(a.workdir, a.checkpoint)
            save_pth(sd, a.out)
            print(f"wrote {a.out} ({len(sd)} tensors): model.load_state_dict(torch.load(path)) in the reference")
            if a.critic_out:
                sd = export_state_dict(a.workdir, a.checkpoint, critic=True)
                save_pth(sd, a.critic_out)
                print(f"wrote {a.critic_out} ({len(sd)} tensors of the critic)")
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        p.exit(2, f"error: {e}\n")
