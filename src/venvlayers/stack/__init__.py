"""The stack spec and its layer graph: what the user declared, validated and ordered."""
