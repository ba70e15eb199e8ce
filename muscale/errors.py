"""Errors a user can cause, and the exit codes of every command: OK; FAIL when runs failed or
the gate found a regression; USAGE for an InputError, which the CLI prints as one line; DIVERGED."""

OK, FAIL, USAGE = 0, 1, 2
# A coordinate check that finished, but some of whose runs turned non-finite (recorded as diverged).
DIVERGED = 3


class InputError(ValueError):
    """Bad input, raised before anything is written so a failed command leaves no debris."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}; {fix}")

    def __reduce__(self):
        """A worker process's error reaches the parent whole: pickling's default would call
        __init__ with the one formatted message and fail there."""
        return type(self), (self.field, self.problem, self.fix)


class RunFailed(RuntimeError):
    """A run's worker process died outright (killed, out of memory, a segfault) in a command
    that does not keep going: nothing of the user's input to fix and no traceback worth
    showing, so the CLI prints the run and the cause in one line and exits FAIL."""
