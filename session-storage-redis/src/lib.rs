//! Work in progress: see the README for what is built.
