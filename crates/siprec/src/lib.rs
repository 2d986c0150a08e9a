//! SIPREC parsing (placeholder until the parser lands).
