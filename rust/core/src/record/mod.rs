//! Frame schema, wait-free ring and Arrow batch builder.
