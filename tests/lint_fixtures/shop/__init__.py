"""A small shop whose tasks make every mistake the linter knows (read, never run)."""
