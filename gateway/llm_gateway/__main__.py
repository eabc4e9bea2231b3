"""`python -m llm_gateway`: the same as the `llm-gateway` command."""

from llm_gateway.cli import main

raise SystemExit(main())
