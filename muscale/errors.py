"""Errors a user can cause, and the exit codes of every command: OK; FAIL when runs failed or
the gate found a regression; USAGE for an InputError, which the CLI prints as one line."""

OK, FAIL, USAGE = 0, 1, 2


class InputError(ValueError):
    """Bad input, raised before anything is written so a failed command leaves no debris."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}; {fix}")
