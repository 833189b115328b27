//! `wait --condition` expressions (not implemented yet).
