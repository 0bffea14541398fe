"""fwi_jax's command-line flag style, shared by every command.

Flags are spelled with dashes (``--data-root``, ``--batch-size``); the underscore spelling
(``--data_root``) is accepted as the same flag. The trainer sets config fields with
``--config.section.field=value``.
"""

from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """argparse that also accepts ``--multi_word`` for every ``--multi-word`` flag (subcommands too)."""

    def add_argument(self, *names, **kwargs):
        aliases = ["--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]]
        return super().add_argument(*names, *aliases, **kwargs)
