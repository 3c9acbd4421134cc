//! End-to-end tests for `recourse` live in `tests/`; this library is empty.
