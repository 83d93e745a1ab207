"""The one kind of error a user can fix: bad input, a run directory in the way, missing data.

Whatever raises it says in its message what is wrong and what to do; the entry point prints that one line
and exits 2 (a sweep lists it and goes on). Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or an unusable run directory or data set: the message names the problem and the fix."""
