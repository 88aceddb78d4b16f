"""``python -m dicom4qi``: the command line."""

import sys

from dicom4qi.cli.main import main

sys.exit(main())
