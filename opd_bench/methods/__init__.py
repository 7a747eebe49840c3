"""Methods: small strategies over the one runner, one module per method (``registry``: adding a method is
adding its file). ``METHODS[name]()`` builds one; the classes are imported on first use, so listing or checking
method names (the CLI) loads no torch."""
from .registry import all_methods, check_method, method_class, method_names

__all__ = ["METHODS", "OBJECTIVES", "Method", "all_methods", "check_method", "method_class", "method_names"]


def __getattr__(name: str):
    """Lazy attributes: ``METHODS`` ({name: class}), ``OBJECTIVES`` (the RL objectives), ``Method``."""
    if name == "METHODS":
        return all_methods()
    if name == "OBJECTIVES":
        all_methods()   # every method module registers its objectives on import
        from .grpo import OBJECTIVES

        return OBJECTIVES
    if name == "Method":
        from .base import Method

        return Method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
