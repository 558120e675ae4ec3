#!/usr/bin/env python3
"""Test variant (tests/e2e/images/unhealthy): a health check that never passes."""

import sys

print("healthcheck: this test image is unhealthy on purpose", file=sys.stderr)
sys.exit(1)
