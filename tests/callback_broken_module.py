"""A module that fails on import, for the one-line error of `--callback callback_broken_module:anything`."""

raise ImportError("this module cannot be imported on purpose")
