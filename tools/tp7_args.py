"""argparse with one-line errors, for the tools that the C# tests and benchmarks call.

argparse prints its usage block before an error; a caller that shows a child's stderr as one line
(as the CLI rule asks of `tp7`) then shows the usage instead of the reason. Here the error is
`<prog>: error: <message> (see --help)` on one line, exit code 2 as with argparse.
"""

import argparse


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
