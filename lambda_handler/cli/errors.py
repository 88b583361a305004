"""The CLI's own errors: user mistakes reported in one line with an exit code."""


class CliError(Exception):
    """A user error worth one line and exit code 1."""

    exit_code = 1


class CliInterrupted(CliError):
    """Ctrl-C, reported in one line with the shell's code for SIGINT."""

    exit_code = 130


def caused_by_interrupt(err: BaseException | None) -> bool:
    """Whether Ctrl-C turned into another error on its way up (numpy makes an interrupted
    import an ImportError, for one)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
