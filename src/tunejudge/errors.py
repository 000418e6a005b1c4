"""Errors that carry one clear, user-facing message."""


class TunejudgeError(Exception):
    """Base class: the message names what is wrong and where (file, record, field)."""


class DataError(TunejudgeError):
    """Bad input data: names the file, the record index and the field."""

    def __init__(self, path, index=None, field=None, problem=""):
        self.path, self.index, self.field, self.problem = str(path), index, field, problem
        where = [self.path]
        if index is not None:
            where.append(f"record {index}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join(where) + f": {problem}")


class ConfigError(TunejudgeError):
    """A config value that cannot work; names the key."""


class SplitError(TunejudgeError):
    """A split that would leak test items into training or cannot be filled."""
