"""Errors a user can fix: the command lines print them as one line and exit with status 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""
