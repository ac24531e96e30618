"""Long-running campaigns run on demand (`python -m tests.campaigns.NAME`); the test suite
runs small seeded versions of them."""
