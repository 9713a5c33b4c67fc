"""`python -m keras_lm_cli` is `keras-lm`."""
import sys

from keras_lm_cli.main import main

sys.exit(main())
