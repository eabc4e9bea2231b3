from bench.system.cli import main

raise SystemExit(main())
