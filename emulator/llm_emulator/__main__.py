"""`python -m llm_emulator --host 127.0.0.1 --port 11434 [--tokens 8] ...`"""

import sys

from llm_emulator.server import main

sys.exit(main())
