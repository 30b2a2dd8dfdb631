"""Errors that stop a conversion, each with the exit code `belka` returns for it."""


class BelkaError(Exception):
    """A failure explained to the user in one message (no traceback)."""

    exit_code = 1


class BadInput(BelkaError):
    """The user's input cannot be converted: missing or corrupt file, wrong flag value..."""

    exit_code = 2


class VerificationFailed(BelkaError):
    """The converted artifacts do not compute what the source model computes."""

    exit_code = 3


class DownloadFailed(BelkaError):
    """Pretrained weights could not be downloaded (offline, proxy, server down)."""

    exit_code = 4


class PortInUse(BelkaError):
    """`belka serve`: another program already listens on the port."""

    exit_code = 5
