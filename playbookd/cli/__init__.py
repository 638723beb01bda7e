"""Command line: the click commands (commands), how results are printed (output), what the
commands do beyond printing (actions), and the sample data `init` writes."""
