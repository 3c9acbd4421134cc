//! trybuild cases for the macros live in `tests/ui`; this library is empty.
