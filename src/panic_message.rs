//! The text a panic carries, for a caught panic's error message.

use std::any::Any;

/// `panic!`'s message (a `&str` or a formatted `String`), or None for any other payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
