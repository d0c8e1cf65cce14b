//! The result shape shared by every parser in this crate.

/// The outcome of feeding bytes to a parser that did not fail.
///
/// "Need more" is not an error: a stream socket may split an item anywhere, and the caller
/// simply reads again and calls the parser with the longer input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decoded<T> {
    /// A whole item was parsed.
    Complete(T),
    /// The input ends inside an item; nothing that would change the result was consumed.
    NeedMore,
}

impl<T> Decoded<T> {
    /// The item, if one was complete.
    pub fn complete(self) -> Option<T> {
        match self {
            Decoded::Complete(item) => Some(item),
            Decoded::NeedMore => None,
        }
    }

    /// Whether the parser asked for more input.
    pub fn is_need_more(&self) -> bool {
        matches!(self, Decoded::NeedMore)
    }

    /// Applies `f` to a complete item.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decoded<U> {
        match self {
            Decoded::Complete(item) => Decoded::Complete(f(item)),
            Decoded::NeedMore => Decoded::NeedMore,
        }
    }
}
