"""`python -m llm_stack.bootstrap --tools-dir DIR`: print the directory holding `pulumi`."""

from llm_stack.bootstrap.pulumi_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
