//! Momentum-style configuration: syntax, typed options with documented defaults, validation.
