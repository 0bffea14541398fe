import sys

from fwi_jax.torch_port.cli import main

sys.exit(main())
