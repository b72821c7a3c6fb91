"""The command line: argument grammar, commands, and the stage chains they run."""
