"""Which onnxruntime execution providers a session gets.

The default is the fastest provider this onnxruntime build offers (CUDA first), with the CPU
always last as the fallback. A flag or a model's manifest can narrow or reorder that list.
"""

from __future__ import annotations

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE = (CUDA, CPU)
ALIASES = {"cuda": CUDA, "gpu": CUDA, "cpu": CPU}


class ProviderError(ValueError):
    pass


def normalise_provider(name: str) -> str:
    name = name.strip()
    return ALIASES.get(name.lower(), name)


def parse_provider_list(text: str | None) -> list[str] | None:
    """'cuda,cpu' -> full names; None, '' or 'auto' -> None (choose automatically)."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    return [normalise_provider(p) for p in text.split(",") if p.strip()]


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """The providers to create a session with, most preferred first.

    requested=None: every provider of PREFERENCE that is available, in that order.
    requested: those of them that are available, in the requested order; requesting only
    providers this build lacks is an error rather than a silent CPU run.
    """
    if requested is None:
        chosen = [p for p in PREFERENCE if p in available]
    else:
        chosen = [p for p in requested if p in available]
        if not chosen:
            raise ProviderError(
                f"none of the requested execution providers {requested} is available "
                f"in this onnxruntime build (available: {available})")
    if not chosen:
        raise ProviderError(f"no usable execution provider among {available}")
    return chosen
