"""`python -m healthtwin` runs the same command as `healthtwin`."""
import sys

from .cli import main

sys.exit(main())
