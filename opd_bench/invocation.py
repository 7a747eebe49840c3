"""The command line being run: set once by the ``opd-bench`` entry point (``opd_bench.cli.main``), read by
the commands that record how an artefact was made (a checkpoint's ``training.command``)."""
from __future__ import annotations

from typing import List

#: the arguments after the program name (``sys.argv[1:]``, or the ``argv`` given to ``cli.main`` in-process)
ARGS: List[str] = []


def command_line(program: str = "opd-bench") -> str:
    """The command as run, e.g. ``opd-bench world pretrain --config world/base_stage1 --out checkpoints/base``."""
    return " ".join([program, *ARGS])
