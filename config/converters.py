"""URL converters shared by every app."""


class IdConverter:
    """A database id in a URL: 1 to 18 digits.

    Django's `<int:>` also matches numbers past 64 bits, which the database cannot compare (SQLite
    raises OverflowError, a 500); with this converter such a URL is simply not found (404).
    """

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))
