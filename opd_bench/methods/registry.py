"""The one registry of methods: every module ``opd_bench/methods/<module>.py`` (except ``base``, ``registry`` and
``_private`` helpers) defines the method named after it (``multi_reward.py`` -> ``multi-reward``): one
:class:`~opd_bench.methods.base.Method` subclass whose ``name`` is that name. Adding a method is adding that one
file: the CLI's ``--method`` choices, config validation (``method:``) and the runner all read this registry.

Names are found without importing the modules (no torch), so the CLI can list and check them at once; a
method's class -- and with it its traits (``uses_teachers``, ``single_task``, ``trains_tasks_in_sequence``,
``gradient_objective``, ``config_sections``, ...) -- is imported on first use."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, List

from ..errors import UserError

#: modules of the package that are not methods
NOT_METHODS = ("base", "registry")


def _package():
    from .. import methods

    return methods


def method_names() -> List[str]:
    """Every registered method's name, sorted (a scan of the package's modules: nothing is imported)."""
    mods = {m.name for m in pkgutil.iter_modules(_package().__path__)}
    return sorted(m.replace("_", "-") for m in mods if m not in NOT_METHODS and not m.startswith("_"))


def check_method(name: str) -> str:
    """``name`` if it is a registered method, else one UserError naming the choices."""
    names = method_names()
    if name not in names:
        raise UserError(f"unknown method {name!r} (choose from {', '.join(names)})")
    return name


def method_class(name: str) -> type:
    """The class of method ``name`` (its module imported on first use)."""
    from .base import Method

    check_method(name)
    module = importlib.import_module(f"{_package().__name__}.{name.replace('-', '_')}")
    found = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, Method) and c.__module__ == module.__name__ and c.name == name]
    if len(found) != 1:
        raise TypeError(f"{module.__file__} must define exactly one Method subclass with name = {name!r} "
                        f"(found {len(found)})")
    return found[0]


def all_methods() -> Dict[str, type]:
    """{name: class} of every registered method (imports them all)."""
    return {n: method_class(n) for n in method_names()}
