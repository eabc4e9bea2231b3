"""What `make up`, `make preview` and `make down` set up before they run Pulumi.

- `pulumi_cli.py`: the Pulumi CLI to run: the one on the PATH, else a pinned release
  fetched into the project's `.tools/`, its SHA-256 checked against the checksums kept
  in that module, extracted safely.
- `__main__.py`: `python -m llm_stack.bootstrap`, the thin entry the Makefile calls
  (prints the directory holding `pulumi`).
"""
