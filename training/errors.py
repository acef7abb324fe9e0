"""The failures a training run reports as one line, without a traceback.

InputError covers what is wrong before any training: the data or the options given. The CLI
answers it with exit status 2, as argparse answers a bad option, so a script can tell "fix
your input" (2) from a run that failed later (1: divergence, export or parity).
"""

from __future__ import annotations


class InputError(ValueError):
    """Data or options that cannot work; found before the first epoch."""


class DataError(InputError):
    """A data file or folder that cannot be used; the message names the file."""


class OptionError(InputError):
    """An option that cannot work with this data or this machine; the message names it."""
