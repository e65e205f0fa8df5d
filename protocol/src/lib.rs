//! Host ↔ agent wire types: one definition for `shiftnas` and `shiftnas-agent`.
#![deny(missing_docs)]
