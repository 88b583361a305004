"""How the CLI talks to its user on stderr: literal messages, error lines, warnings, progress."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

# stdout carries the command's result (a document, GeoJSON, names): everything else goes here.
stderr = Console(stderr=True)


def say(message: str, style: str | None = None) -> None:
    """Print one message on stderr exactly as written.

    Messages carry paths, URIs and install commands such as `pip install "pkg[gcs]"`: rich
    markup would eat the brackets (or fail on `[/b]`), so the text never goes through it.
    """
    stderr.print(Text(message, style=style or ""), highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One `Error: …` line, the message printed literally."""
    stderr.print(Text("Error: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (the default format adds the source file and line).

    Has the signature of `warnings.showwarning`, which it replaces.
    """
    say(f"warning: {message}", style="yellow")


def progress_bar() -> Progress:
    """A progress bar on stderr that leaves nothing behind when it ends."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        # Not on a terminal (a pipe, a log): no bar, and no stray blank line when it ends.
        disable=not stderr.is_terminal,
    )
