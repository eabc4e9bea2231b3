from bench.semantic.cli import main

raise SystemExit(main())
