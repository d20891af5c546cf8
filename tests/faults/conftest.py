"""The fault-injection suite shares the core tests' builders (tests/helpers.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
