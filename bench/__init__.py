"""Speed measurements (run as scripts; never part of the test suite)."""
