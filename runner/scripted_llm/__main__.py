import sys

from runner.scripted_llm.main import main

sys.exit(main())
