"""Errors a user can act on. The CLI prints their message on stderr and exits 2 — never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, a flag, a manifest): the message says what is wrong and where."""

    exit_code = 2
