"""One construct per capability; the stack wires them together."""
