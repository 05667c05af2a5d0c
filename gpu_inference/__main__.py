import sys

from gpu_inference.cli import main

sys.exit(main())
