//! Policy key rules: `recourse_policy::key`, the same code the runtime's
//! `recourse::policy::validate_key` is, with the message as a string.

pub(crate) use recourse_policy::key::suggest;

/// Why a key literal is not a well-formed `service.Operation` key.
pub(crate) fn key_problem(text: &str) -> Option<String> {
    recourse_policy::key::validate_key(text).err().map(|error| error.to_string())
}

/// Splits a valid key at its first dot.
pub(crate) fn split(text: &str) -> (&str, &str) {
    text.split_once('.').unwrap_or(("", text))
}
