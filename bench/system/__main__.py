import sys

from bench.system.cli import main

try:
    raise SystemExit(main())
except KeyboardInterrupt:
    print("interrupted: every process of the bench was stopped", file=sys.stderr)
    raise SystemExit(130) from None
