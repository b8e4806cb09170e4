"""Device layer: reach a benchmark target (local, adb, ssh), run a timing tool there, parse it.

``bench.run_benchmark`` is the entry point; ``transport`` moves files and runs commands without a
shell on this side and with every remote word quoted; ``parsers`` reads the tools' text output.
"""
