"""`nalar stubs`: typed stub modules for an app's agents, so mypy checks the calls workflows make.

Sources are the agent classes in `agents/*.py` and Ventis-style interface files
`agents/*.yaml`; the output is one module per source in `stubs/`, rewritten only when it changes.

The package's parts: `loader` imports the app's agent modules, `python_source` and
`yaml_source` turn agents into the `model`, `render` writes the modules, `generate` plans the
files, `cli` is the command.
"""

from nalar.stubgen.cli import register
from nalar.stubgen.generate import generate_stubs, render_stubs, stale_stubs
from nalar.stubgen.model import HEADER

__all__ = ["HEADER", "generate_stubs", "register", "render_stubs", "stale_stubs"]
