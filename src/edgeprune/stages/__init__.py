"""Workflow stages: one function per Snakemake rule, called by the thin scripts in
``workflow/scripts``. Each takes plain paths and the validated config and a ``log`` callable."""
