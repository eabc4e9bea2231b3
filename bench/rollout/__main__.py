import sys

from bench.rollout.cli import main

try:
    raise SystemExit(main())
except KeyboardInterrupt:
    print("interrupted: the local stack was stopped", file=sys.stderr)
    raise SystemExit(130) from None
