"""The one error the domain raises for bad input: it names the field and the reason."""


class Rejected(ValueError):
    """A command, a row or a file was refused; ``field`` says where, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
